#!/usr/bin/env bash
# Build anchorscope with the CUDA path (`--features cuda`) on a machine without a GPU or a
# system CUDA toolkit: CUDA 13.0 comes from NVIDIA's PyPI wheels.
#
# The binary opens the NVIDIA driver and the CUDA libraries at run time (cudarc's dynamic
# loading), so it starts on any machine: without a driver `--device auto` runs on the CPU and
# says why, and `--device cuda` is an error naming what is missing. On the GPU machine the CUDA
# runtime libraries must be findable: put their directory on LD_LIBRARY_PATH (the toolkit's
# lib/ below, or PyTorch's site-packages nvidia/cu13/lib).
#
# Usage: scripts/build-cuda.sh [PREFIX] [-- CARGO ARGS]
#   PREFIX      where the toolkit goes (default: ~/.cache/anchorscope/cuda13)
#   CARGO ARGS  what cargo runs with the toolkit (default: build --release --features cuda;
#               scripts/gpu-check.sh passes `test --release --features cuda`)
# Takes 7-20 minutes on 2 cores (nvcc most of it) and ~650 MB of wheels.
set -euo pipefail

# Resolve the repository first: the script may be called by a relative path and cds below.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${XDG_CACHE_HOME:-$HOME/.cache}/anchorscope/cuda13"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  prefix="$1"
  shift
fi
[ "${1:-}" = "--" ] && shift
if [ $# -eq 0 ]; then
  set -- build --release --features cuda
fi
mkdir -p "$prefix/wheels"
prefix="$(cd "$prefix" && pwd)"
step() { printf '\n==> %s\n' "$*"; }

step "CUDA 13.0 toolkit from PyPI into $prefix"
# Exact versions: a newer nvcc emits PTX an older driver may refuse, and cudarc rejects 13.5.
python3 -m pip download --no-deps --only-binary=:all: -d "$prefix/wheels" \
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 \
  nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
for w in "$prefix"/wheels/*.whl; do python3 -m zipfile -e "$w" "$prefix"; done
cuda="$prefix/nvidia/cu13"
chmod +x "$cuda"/bin/* "$cuda"/nvvm/bin/* 2>/dev/null || true
# candle's MoE kernels link the CUDA runtime (`-lcudart`). With no `libcudart.so` on the
# linker's path and only the static runtime named libcudart.a, the linker takes the static one,
# so the binary does not need libcudart.so.13 to start (the runtime opens the driver only when
# the GPU is used). The other CUDA libraries are opened at run time by cudarc.
rm -f "$cuda/lib/libcudart.so"
mkdir -p "$prefix/static-cudart"
cp "$cuda/lib/libcudart_static.a" "$prefix/static-cudart/libcudart.a"

cd "$repo"
step "cudarc with run-time loading"
# candle-core asks cudarc for `dynamic-linking`, which makes libcuda.so.1 (shipped only with
# the driver) a start-up requirement of the binary. Build with a copy of the locked cudarc in
# which that feature means cudarc's `dynamic-loading` instead: the libraries are opened when
# the GPU is first used. The copy is made fresh from the registry (fetched first: a fresh
# machine has nothing there yet) and only the feature wiring is edited.
cargo fetch --quiet
version="$(awk '/^name = "cudarc"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)"
registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
source_dir="$(find "$registry" -maxdepth 2 -type d -name "cudarc-$version" | head -n 1)"
if [ -z "$source_dir" ]; then
  echo "cudarc $version is not in $registry after cargo fetch" >&2
  exit 1
fi
patched="$prefix/cudarc-$version-loading"
rm -rf "$patched"
cp -r "$source_dir" "$patched"
sed -i 's/^dynamic-linking = \[\]$/dynamic-linking = ["dynamic-loading"]/' "$patched/Cargo.toml"
sed -i 's/feature = "dynamic-linking"/feature = "dynamic-linking-replaced"/g' "$patched/build.rs"
grep -q '^dynamic-linking = \["dynamic-loading"\]$' "$patched/Cargo.toml" || {
  echo "cudarc $version: its dynamic-linking feature has changed shape; update this script" >&2
  exit 1
}

step "cargo $*"
export CUDA_HOME="$cuda" PATH="$cuda/bin:$PATH" CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" \
  CUDARC_CUDA_VERSION=13000 CUDAFORGE_THREADS="$(nproc)" \
  LIBRARY_PATH="$prefix/static-cudart:$cuda/lib:${LIBRARY_PATH:-}"
# The patch rewrites Cargo.lock's cudarc source; the committed lock file is put back after.
cp Cargo.lock "$prefix/Cargo.lock.orig"
trap 'cp "$prefix/Cargo.lock.orig" "$repo/Cargo.lock"' EXIT
cargo --config "patch.crates-io.cudarc.path=\"$patched\"" "$@"
echo "done with CUDA (compute capability $CUDA_COMPUTE_CAP): cargo $*"
echo "at run time on the GPU machine: LD_LIBRARY_PATH=$cuda/lib (or PyTorch's nvidia/cu13/lib)"
