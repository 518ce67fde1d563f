#!/usr/bin/env python3
"""The peer of bench/cuda_decode.cpp: transformers `generate` (greedy) on CUDA in bf16, random
weights of the shape an HF config.json describes, a random prompt, a fixed number of new tokens
(min_new_tokens = max_new_tokens, so every run decodes as far). Prints one JSON line per batch
size with the median tokens/s over the whole generate call (new tokens x batch / seconds) and
the peak memory.

Runs on the GPU machine (torch + transformers there); bench/run_cuda_decode.sh calls it.
"""
import argparse
import json
import statistics
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shape", default="bench/shapes/llama3_8b.json")
    ap.add_argument("--batch", default="1", help="batch sizes, comma-separated")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    config = AutoConfig.from_pretrained(a.shape)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.eval()
    for batch in (int(b) for b in a.batch.split(",")):
        report(model, config, a, batch)


def report(model, config, a, batch):
    ids = torch.randint(0, config.vocab_size, (batch, a.prompt), device="cuda")
    mask = torch.ones_like(ids)
    rates = []
    torch.cuda.reset_peak_memory_stats()
    for r in range(a.warmup + a.runs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens,
                                 pad_token_id=0)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        new = (out.shape[1] - a.prompt) * batch
        if r >= a.warmup:
            rates.append(new / seconds)
    print(json.dumps({
        "impl": "transformers",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(),
        "batch": batch,
        "prompt_tokens": a.prompt,
        "new_tokens": a.new_tokens,
        "tokens_per_s": statistics.median(rates),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "shape": a.shape,
    }), flush=True)


if __name__ == "__main__":
    main()
