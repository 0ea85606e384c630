#!/usr/bin/env bash
# How the label shares in ../MANIFEST.md ("Which default model") were measured: for each model,
# the share of responses and of rollouts whose compliance label is valid (a tag was written, the
# label is yes or no, not n/a), on the sample queries and system prompt, both tiers.
#
#   measure-labels.sh OUT          run everything into OUT (about 40 min on 2 cores), then count
#   measure-labels.sh --count OUT  only count what OUT holds
#
# Responses: `collect` with seeds 1 and 2 (2 queries x 2 tiers each), plus 8 fresh responses per
# seed-1 trace sampled from position 0 (the whole reasoning resampled; the same prompt, opener and
# sampler as collect, 8 rows at a time), all with the 300-token cap of generate.sh. Rollouts: the
# seed-1 traces at the 256-token cap of generate.sh, every third position x 4 for both models.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${ANCHORSCOPE:-$here/../../target/release/anchorscope}"
count_only=no
if [ "${1:-}" = "--count" ]; then count_only=yes; shift; fi
out="${1:?usage: measure-labels.sh [--count] OUT}"
models="smollm2-135m qwen2.5-0.5b"

if [ "$count_only" = no ]; then
  mkdir -p "$out"
  cp "$here/system.txt" "$here/queries.txt" "$out/"
  cd "$out"
  for m in $models; do
    for seed in 1 2; do
      nice -n 10 "$bin" collect --prompt-file system.txt --queries queries.txt --tier both \
        --max-new-tokens 300 --seed $seed --device cpu --model $m -o "resp-$m/s$seed"
    done
    mkdir -p "pos0-$m"; cp resp-$m/s1/*.json "pos0-$m/"
    for tr in pos0-$m/queries-*.json; do
      nice -n 10 "$bin" analyze "$tr" --positions 0 -n 8 --max-new-tokens 300 --device cpu \
        --model $m --no-embedder > /dev/null
    done
    d="roll-$m-256"; mkdir -p "$d"; cp resp-$m/s1/*.json "$d/"
    for tr in "$d"/queries-*.json; do
      k=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['sentences']))" "$tr")
      pos=$(seq -s, 0 3 "$k"); n=4
      nice -n 10 "$bin" analyze "$tr" --positions "$pos" -n $n --max-new-tokens 256 --device cpu \
        --model $m --no-embedder > /dev/null
    done
  done
  cd - > /dev/null
fi

# The classifier's own labels: `label` for the responses, the stores for the rollouts. Besides
# the valid share, how many outputs exist at all and how many say accept or reject in any form
# (the tag, or words such as `<OUTPUT>rejected</OUTPUT>`): what a looser classifier would see.
for m in $models; do
  for s in s1 s2; do
    "$bin" label "$out/resp-$m/$s" --behavior compliance --json > "$out/resp-$m/$s.labels.json"
  done
done
python3 - "$out" $models <<'PY'
import glob, json, re, sys
out, models = sys.argv[1], sys.argv[2:]
ACC = re.compile(r'(?i)request[\s_]*fully[\s_]*accepted')
REJ = re.compile(r'(?i)\breject(ed)?\b')

def output(text):
    """What the compliance classifier reads: after the last scratchpad, else the last OUTPUT."""
    i = text.rfind('</SCRATCHPAD_REASONING>')
    if i >= 0:
        return text[i + len('</SCRATCHPAD_REASONING>'):]
    j = text.rfind('<OUTPUT>')
    return text[j + len('<OUTPUT>'):] if j >= 0 else None

def responses(m):
    for s in ('s1', 's2'):
        labels = {t['trace']: t['labels']['compliance']['value']
                  for t in json.load(open(f'{out}/resp-{m}/{s}.labels.json'))}
        for f in sorted(glob.glob(f'{out}/resp-{m}/{s}/*.json')):
            t = json.load(open(f))
            yield t['response'], labels[t['id']]

def rollouts(pattern):
    """Each rollout as the classifier judged it: the trace's response up to the position, then
    the rollout's text."""
    for f in sorted(glob.glob(pattern)):
        trace = json.load(open(f[:-len('.rollouts.jsonl')] + '.json'))
        s = trace['sentences']
        for line in open(f):
            r = json.loads(line)
            p = r['position']
            cut = s[p]['start'] if p < len(s) else s[-1]['end']
            yield trace['response'][:cut] + r['text'], r['labels']['compliance']['value']

def row(what, items):
    items = list(items)
    n = len(items)
    valid = sum(v in ('yes', 'no') for _, v in items)
    outs = [output(t) for t, _ in items]
    wrote = sum(o is not None for o in outs)
    words = sum(o is not None and bool(ACC.search(o) or REJ.search(o)) for o in outs)
    print(f'  {what:<36} valid {valid:>3}/{n:<3}  wrote an output {wrote:>3}/{n:<3}'
          f'  accept/reject in any form {words:>3}/{n}')

for m in models:
    print(m)
    row('responses: collect, seeds 1-2', responses(m))
    row('responses: position 0, 8 a trace', rollouts(f'{out}/pos0-{m}/*.rollouts.jsonl'))
    row('rollouts, cap 256', rollouts(f'{out}/roll-{m}-256/*.rollouts.jsonl'))
PY
