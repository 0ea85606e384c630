#!/usr/bin/env python3
"""The peer side of `anchorscope bench`: Python `transformers` sampling the same jobs.

Reads the inputs JSON written by `anchorscope bench` (the same token ids anchorscope continues),
loads the same GGUF file with `AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)`
dequantized to float32, and times one job:

  single  one generate() of --rows rows of the single prefix
  sweep   one generate() per sweep position (no prefix cache, as in the Thought Anchors
          reference pipeline), --rows rows each
  matmul  float32 matmul FLOP/s of the given shapes (for the roofline)

Sampling: do_sample, temperature and top_p from the inputs, top_k off, exactly --new-tokens new
tokens per row (min_new_tokens = max_new_tokens). Prints one JSON object on stdout and nothing
else (progress and library chatter go to stderr).
"""

import argparse
import json
import os
import resource
import sys
import time


def peak_rss_bytes():
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def proc_status_bytes(field):
    """A `kB` field of /proc/self/status (Linux: VmHWM peak, VmRSS current), or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def sync(torch, device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def load_model(torch, model_path, device):
    from transformers import AutoModelForCausalLM

    directory, name = os.path.split(os.path.abspath(model_path))
    if os.path.isdir(model_path):
        kwargs = {}
        directory = model_path
    else:
        kwargs = {"gguf_file": name}
    try:
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, **kwargs)
    except TypeError:
        # transformers < 4.56 spells it torch_dtype.
        model = AutoModelForCausalLM.from_pretrained(
            directory, torch_dtype=torch.float32, **kwargs
        )
    model.to(device)
    model.eval()
    return model


def generate_job(torch, model, prompts, rows, new_tokens, temperature, top_p, device):
    """Generate rows × new_tokens for each prompt; returns (tokens, seconds, per-prompt s)."""
    pad = model.generation_config.eos_token_id
    if isinstance(pad, list):
        pad = pad[0]
    tokens = 0
    per_prompt = []
    total = 0.0
    for ids in prompts:
        input_ids = torch.tensor([ids] * rows, dtype=torch.long, device=device)
        mask = torch.ones_like(input_ids)
        sync(torch, device)
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                top_k=0,
                repetition_penalty=1.0,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                pad_token_id=pad,
            )
        sync(torch, device)
        seconds = time.perf_counter() - started
        per_prompt.append(seconds)
        total += seconds
        tokens += (out.shape[1] - input_ids.shape[1]) * out.shape[0]
    return tokens, total, per_prompt


def matmul_rates(torch, shapes, device, min_time):
    rates = []
    for m, k, n in shapes:
        a = torch.randn(m, k, dtype=torch.float32, device=device)
        b = torch.randn(k, n, dtype=torch.float32, device=device)
        a @ b
        sync(torch, device)
        started = time.perf_counter()
        repeats = 0
        while repeats == 0 or time.perf_counter() - started < min_time:
            a @ b
            sync(torch, device)
            repeats += 1
        seconds = time.perf_counter() - started
        rates.append(
            {
                "library": "torch",
                "m": m,
                "k": k,
                "n": n,
                "dtype": "f32",
                "repeats": repeats,
                "flops_per_s": 2.0 * m * k * n * repeats / seconds,
            }
        )
    return rates


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", required=True, help="inputs JSON written by anchorscope bench")
    ap.add_argument("--job", choices=["single", "sweep", "matmul"], required=True)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--shapes", default="16x576x1536,1024x1024x1024", help="matmul MxKxN list")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per matmul shape")
    args = ap.parse_args()

    # stdout carries only the result: everything else (warnings, progress) goes to stderr.
    result_out = sys.stdout
    sys.stdout = sys.stderr

    import torch

    torch.manual_seed(0)
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_peer.py: --device cuda but torch sees no CUDA GPU")

    if args.job == "matmul":
        shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
        result = {"matmul": matmul_rates(torch, shapes, device, args.min_time)}
        result_out.write(json.dumps(result) + "\n")
        return

    with open(args.inputs, encoding="utf-8") as f:
        inputs = json.load(f)
    started = time.perf_counter()
    model = load_model(torch, inputs["model_path"], device)
    load_s = time.perf_counter() - started
    rss_after_load = proc_status_bytes("VmRSS")
    # After the reset VmHWM is the job's own peak (ru_maxrss keeps the process's).
    reset = reset_peak_rss()
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    if args.job == "single":
        prompts = [inputs["single"]]
    else:
        prompts = inputs["sweep"]
    tokens, seconds, per_prompt = generate_job(
        torch,
        model,
        [p["ids"] for p in prompts],
        args.rows,
        args.new_tokens,
        inputs["temperature"],
        inputs["top_p"],
        device,
    )
    import transformers

    note = "torch {} ({} threads), transformers {}".format(
        torch.__version__, torch.get_num_threads(), transformers.__version__
    )
    if device == "cuda":
        note += ", cuda max allocated {} MiB".format(torch.cuda.max_memory_allocated() >> 20)
    result = {
        "side": "transformers",
        "job": args.job,
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "precision": "{} (dequantized from GGUF)".format(dtype)
        if not os.path.isdir(inputs["model_path"])
        else dtype,
        "rows": args.rows,
        "new_tokens": args.new_tokens,
        "prefix_tokens": [len(p["ids"]) for p in prompts],
        "rollouts": args.rows * len(prompts),
        "tokens_generated": int(tokens),
        "finish": {"length": args.rows * len(prompts)},
        "load_s": load_s,
        "wall_s": seconds,
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "position_s": per_prompt,
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_after_load_bytes": rss_after_load,
        "job_peak_rss_bytes": proc_status_bytes("VmHWM") if reset else None,
        "errors": [],
        "note": note,
    }
    result_out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
