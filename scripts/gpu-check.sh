#!/usr/bin/env bash
# One command for whoever has an NVIDIA GPU: build anchorscope with CUDA, run the test suite
# with the CUDA feature (the GPU test checks greedy tokens on CUDA equal the CPU's), run the
# benchmark on `--device cuda` against PyTorch/transformers on cuda, and print one table.
#
# Usage: scripts/gpu-check.sh [PREFIX]    (PREFIX: where the CUDA toolkit goes, as build-cuda.sh)
# Needs: an NVIDIA driver, python3 with pip (or a Python that has torch + transformers: set
# PYTHON), network to PyPI and crates.io the first time. Writes gpu-check.md in the repository.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
prefix="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/anchorscope/cuda13}"
logs="$(mktemp -d)"
report="$repo/gpu-check.md"
gpu="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
[ -n "$gpu" ] || gpu="none found (nvidia-smi)"

step() { printf '\n==> %s\n' "$*"; }
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

step "build with CUDA"
t=$(date +%s)
bash scripts/build-cuda.sh "$prefix" >"$logs/build.log" 2>&1
build_rc=$?
build_time=$(elapsed "$t")
tail -n 3 "$logs/build.log"
# The CUDA runtime libraries of the toolkit the build used (the driver comes with the GPU).
export LD_LIBRARY_PATH="$prefix/nvidia/cu13/lib:${LD_LIBRARY_PATH:-}"

step "cargo test --release --features cuda"
t=$(date +%s)
bash scripts/build-cuda.sh "$prefix" -- test --release --features cuda >"$logs/test.log" 2>&1
test_rc=$?
test_time=$(elapsed "$t")
tests="$(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) {
      if ($(i) ~ /^passed;?$/)  p += $(i-1);
      if ($(i) ~ /^failed;?$/)  f += $(i-1);
      if ($(i) ~ /^ignored;?$/) g += $(i-1);
    }
  } END { printf "%d passed, %d failed, %d ignored", p, f, g }' "$logs/test.log")"
gpu_test="$(grep -E 'greedy_continuations_on_cuda_equal_the_cpu \.\.\. ' "$logs/test.log" | awk '{print $NF}')"
echo "$tests; GPU test: ${gpu_test:-not run}"

step "anchorscope bench --device cuda"
t=$(date +%s)
python="${PYTHON:-python3}"
if ! "$python" -c "import torch, transformers, gguf" 2>/dev/null; then
  # No peer Python here: bench.sh makes its venv (torch with CUDA from PyPI).
  python=""
fi
if [ -n "$python" ]; then
  ANCHORSCOPE_BIN=target/release/anchorscope bash scripts/bench.sh --device cuda \
    --python "$python" --json "$logs/bench.json" >"$logs/bench.log" 2>&1
else
  ANCHORSCOPE_BIN=target/release/anchorscope bash scripts/bench.sh --device cuda \
    --json "$logs/bench.json" >"$logs/bench.log" 2>&1
fi
bench_rc=$?
bench_time=$(elapsed "$t")

status() { [ "$1" -eq 0 ] && echo ok || echo "FAILED (exit $1)"; }
{
  echo "## GPU check ($(date -u +%Y-%m-%d), $gpu)"
  echo
  echo "| step | result | time |"
  echo "|---|---|---|"
  echo "| build --features cuda | $(status $build_rc) | $build_time |"
  echo "| cargo test --release --features cuda | $(status $test_rc): $tests; GPU vs CPU greedy test: ${gpu_test:-not run} | $test_time |"
  echo "| anchorscope bench --device cuda | $(status $bench_rc) | $bench_time |"
  echo
  echo '```'
  cat "$logs/bench.log"
  echo '```'
} >"$report"
cat "$report"
echo
echo "logs: $logs   report: $report"
[ "$build_rc" -eq 0 ] && [ "$test_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
