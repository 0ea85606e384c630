#!/bin/sh
# Runs `anchorscope bench` (README "Benchmark") against Python transformers on the same model,
# or against llama.cpp with `--peer llama.cpp`.
#
# Creates a venv for the peer when it has not got one yet and pip installs its packages from
# PyPI (torch, transformers, accelerate, gguf, numpy: about 1 minute and 5-6 GB the first time),
# then runs the release build of `anchorscope bench` with that Python. Every argument goes to
# `anchorscope bench` (see `anchorscope bench --help`), e.g.
#   bash scripts/bench.sh                       the full benchmark on CPU
#   bash scripts/bench.sh --json bench.json     also write every number as JSON
#   bash scripts/bench.sh --device cuda         the GPU: builds with --features cuda, torch on cuda
#   bash scripts/bench.sh --peer none           anchorscope only (no venv is made)
#   bash scripts/bench.sh --peer llama.cpp --model smollm2-135m
#                                               llama.cpp's llama-batched-bench and llama-server,
#                                               built (once, cached) by scripts/build-llama-cpp.sh
# Settings:
#   ANCHORSCOPE_BENCH_VENV  the venv (default $XDG_CACHE_HOME/anchorscope/bench-venv or
#                           ~/.cache/anchorscope/bench-venv)
#   PYTHON                  the Python that creates the venv (default python3)
#   ANCHORSCOPE_BIN         an anchorscope binary already built (e.g. with CUDA by
#                           scripts/build-cuda.sh) instead of `cargo run --release`
set -eu

root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}
venv=${ANCHORSCOPE_BENCH_VENV:-$cache/anchorscope/bench-venv}

need_peer=yes
need_llama=no
features=""
previous=""
for arg in "$@"; do
    case "$previous:$arg" in
        --peer:none | *:--peer=none) need_peer=no ;;
        --peer:llama.cpp | *:--peer=llama.cpp) need_peer=no need_llama=yes ;;
        # The caller chose the interpreter: leave it alone.
        *:--python | *:--python=*) need_peer=no ;;
        --device:cuda | *:--device=cuda) features="--features cuda" ;;
    esac
    previous=$arg
done

if [ "$need_peer" = yes ]; then
    if [ ! -x "$venv/bin/python" ]; then
        echo "bench.sh: creating the peer's venv in $venv" >&2
        "${PYTHON:-python3}" -m venv "$venv"
    fi
    if ! "$venv/bin/python" -c "import torch, transformers, accelerate, gguf, numpy" 2>/dev/null; then
        echo "bench.sh: installing torch transformers accelerate gguf numpy into $venv" >&2
        "$venv/bin/python" -m pip install --quiet --upgrade pip
        "$venv/bin/python" -m pip install --quiet torch transformers accelerate gguf numpy
    fi
    set -- --python "$venv/bin/python" "$@"
fi
case " $* " in *" --llama-cpp "* | *" --llama-cpp="*) need_llama=no ;; esac
if [ "$need_llama" = yes ]; then
    # The build prints its bin directory last (its progress goes to stderr).
    llama_bin=$(sh "$root/scripts/build-llama-cpp.sh" | tail -n1)
    set -- --llama-cpp "$llama_bin" "$@"
fi

cd "$root"
if [ -n "${ANCHORSCOPE_BIN:-}" ]; then
    exec "$ANCHORSCOPE_BIN" bench "$@"
fi
# shellcheck disable=SC2086 # $features is empty or one flag and its value
exec cargo run --release --quiet $features -- bench "$@"
