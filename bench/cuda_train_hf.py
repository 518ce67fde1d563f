#!/usr/bin/env python3
"""The peer of bench/cuda_train.cpp: training steps on CUDA with Hugging Face transformers + PEFT,
measured as ../shared/device.md describes. The model is built in bf16 from the shape's
config.json with random weights (AutoModelForCausalLM.from_config, nothing downloaded), SDPA
attention; --mode lora: LoRA r=16, alpha=16, dropout 0 on q,k,v,o,gate,up,down (GPT-2: every
Linear but the head) with PEFT's default adapter dtype handling; --mode full: every parameter
trained, all in bf16. Fused torch AdamW (fused=True, one parameter group: everything decayed),
the gradient norm clipped to 1 as transformers' Trainer does by default (--max-grad-norm 0: no
clipping), random token batches with labels = input_ids. --checkpointing: transformers' gradient
checkpointing (use_reentrant=False; for LoRA with enable_input_require_grads).

Prints one JSON line with the median step time of --steps steps after --warmup warm-up steps
(a torch.cuda.synchronize() on each side of every step) and the peak memory
(torch.cuda.max_memory_allocated()); out of memory prints {"error": "oom", ...} instead.

Runs on the GPU machine (torch, transformers, peft there); bench/run_cuda_train.sh calls it.
"""
import argparse
import json
import statistics
import sys
import time
import traceback

import torch
from transformers import AutoConfig, AutoModelForCausalLM

LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="bench/shapes/llama3_1b.json")
    ap.add_argument("--mode", choices=["lora", "full"], default="lora")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()

    head = {"side": "hf", "shape": a.shape, "mode": a.mode, "batch": a.batch, "seq": a.seq,
            "checkpointing": a.checkpointing}
    try:
        out = run(a)
    except torch.cuda.OutOfMemoryError as e:
        out = {"error": "oom", "message": str(e).splitlines()[0],
               "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
    except Exception as e:  # still one line for the table, and the trace on stderr
        traceback.print_exc()
        print(json.dumps({**head, "error": "failed", "message": f"{type(e).__name__}: {e}"}),
              flush=True)
        sys.exit(1)
    print(json.dumps({**head, **out}), flush=True)


def run(a):
    torch.manual_seed(a.seed)
    config = AutoConfig.from_pretrained(a.shape)
    # `dtype` is transformers 5's name for torch_dtype (the old name still works, with a warning).
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16,
                                                 attn_implementation="sdpa")
    model.config.use_cache = False
    # Checkpointing is switched on in the base model before PEFT wraps it, as PEFT's own
    # recipes (prepare_model_for_kbit_training) do.
    if a.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if a.mode == "lora":
            model.enable_input_require_grads()
    if a.mode == "lora":
        from peft import LoraConfig, get_peft_model
        targets = LLAMA_TARGETS if config.model_type != "gpt2" else "all-linear"
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0,
                                                 target_modules=targets, task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, fused=True)

    ids = torch.randint(0, config.vocab_size, (a.batch, a.seq), device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for s in range(a.warmup + a.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if a.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, a.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1e3
        losses.append(loss.item())
        if s >= a.warmup:
            times.append(ms)
    step_ms = statistics.median(times)
    import peft
    import transformers
    return {
        "tokens_per_s": a.batch * a.seq / (step_ms * 1e-3),
        "step_ms": step_ms,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "min_step_ms": min(times),
        "max_step_ms": max(times),
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in params),
        "trainable_dtype": str(params[0].dtype).removeprefix("torch."),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "steps": a.steps,
        "warmup": a.warmup,
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


if __name__ == "__main__":
    main()
