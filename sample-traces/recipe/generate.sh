#!/usr/bin/env bash
# How the bundled sample traces were made: the project's own `collect` and `analyze` with the
# default model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M, `--model qwen2.5-0.5b`) on CPU. Re-running
# it makes new files beside the old ones' names (delete them first); the seeds below make the
# responses reproducible.
set -euo pipefail
cd "$(dirname "$0")"
bin="${ANCHORSCOPE:-../../target/release/anchorscope}"
out=..
if [ "${1:-}" != "--analyze-only" ]; then
trap 'rm -f q-lockpicking.txt q-miracle-cure.txt' EXIT
head -n 1 queries.txt > q-lockpicking.txt
sed -n 2p queries.txt > q-miracle-cure.txt
"$bin" collect --prompt-file system.txt --queries q-lockpicking.txt --tier both \
  --max-new-tokens 300 --seed 1 --device cpu --model qwen2.5-0.5b -o "$out"
"$bin" collect --prompt-file system.txt --queries q-miracle-cure.txt --tier free \
  --max-new-tokens 300 --seed 2 --device cpu --model qwen2.5-0.5b -o "$out"
fi
# Rollouts: every position, 8 per position, at most 256 new tokens each: enough for most
# rollouts to finish the reasoning and write the <OUTPUT> tag the compliance classifier reads
# (the median rollout ends after about 70 tokens); a 2-core CPU does this in well under an hour.
for t in "$out"/q-*-000-*.json; do
  "$bin" --config behaviors.toml analyze "$t" --positions all -n 8 --max-new-tokens 256 \
    --device cpu --model qwen2.5-0.5b
done
