#!/usr/bin/env python3
"""Checks what `tune train` writes against Hugging Face: run on the GPU machine, where torch,
transformers and peft are installed.

    make_peft_case.py BASE_DIR ADAPTER_DIR OUT_CASE

BASE_DIR is a model `tune train` wrote in Hugging Face layout (full fine-tuning or scratch);
ADAPTER_DIR is a LoRA adapter `tune train` wrote in PEFT's layout on top of it. The script loads
the base with transformers and the adapter with PEFT's PeftModel.from_pretrained — failing on
any missing or unexpected adapter tensor — and writes OUT_CASE as a golden case folder
(shared/golden/README.md's layout: config.json, model.safetensors, adapter/, golden.json,
golden.safetensors with logits, hidden states, loss and gradients of the base, and lora.logits,
lora.loss, lora.grad.* through PEFT). `tune check-golden OUT_CASE` then measures how far tune.cpp
is from transformers + PEFT on tune's own outputs.
"""
import json
import os
import shutil
import sys

import peft
import torch
import transformers
from safetensors.torch import load_file, save_file


def main():
    base_dir, adapter_dir, out = sys.argv[1:4]
    torch.manual_seed(0)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    for f in ("config.json", "model.safetensors", "generation_config.json"):
        if os.path.exists(os.path.join(base_dir, f)):
            shutil.copy(os.path.join(base_dir, f), out)
    os.makedirs(os.path.join(out, "adapter"))
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(os.path.join(adapter_dir, f), os.path.join(out, "adapter"))

    model = transformers.AutoModelForCausalLM.from_pretrained(
        base_dir, dtype=torch.float32, attn_implementation="eager")
    vocab = model.config.vocab_size
    batch, seq = 2, 24
    ids = torch.randint(0, vocab, (batch, seq))
    labels = ids.clone()
    labels[0, :5] = -100
    tensors = {"input_ids": ids, "labels": labels}

    out_full = model(input_ids=ids, labels=labels, output_hidden_states=True)
    out_full.loss.backward()
    tensors["logits"] = out_full.logits.detach()
    tensors["loss"] = out_full.loss.detach()
    for i, h in enumerate(out_full.hidden_states):
        tensors[f"hidden.{i}"] = h.detach()
    for name, p in model.named_parameters():
        tensors[f"grad.{name}"] = p.grad.detach().clone()
    model.zero_grad()

    lora = peft.PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
    # Every tensor in the file must have been used, and every LoRA weight loaded from it.
    saved = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    state = {k.replace(".default", ""): v for k, v in lora.state_dict().items() if "lora_" in k}
    missing = sorted(set(state) - set(saved))
    unexpected = sorted(set(saved) - set(state))
    if missing or unexpected:
        sys.exit(f"PEFT: adapter names do not match: missing {missing[:5]}, "
                 f"unexpected {unexpected[:5]}")
    worst = max((state[k] - saved[k]).abs().max().item() for k in saved)
    nonzero_b = max(v.abs().max().item() for k, v in saved.items() if "lora_B" in k)
    print(f"PEFT {peft.__version__} loaded {len(saved)} adapter tensors from {adapter_dir}; "
          f"max |loaded - file| = {worst:.1e}; max |lora_B| = {nonzero_b:.3e}")
    if nonzero_b == 0:
        sys.exit("the adapter's lora_B are all zero: train it for a few steps first")

    for p in lora.parameters():
        p.grad = None
    out_lora = lora(input_ids=ids, labels=labels)
    out_lora.loss.backward()
    tensors["lora.logits"] = out_lora.logits.detach()
    tensors["lora.loss"] = out_lora.loss.detach()
    for name, p in lora.named_parameters():
        if p.requires_grad:
            tensors["lora.grad." + name.replace(".default", "")] = p.grad.detach().clone()
    diff = (out_lora.logits - out_full.logits).abs().max().item()
    print(f"the adapter changes the logits by up to {diff:.3e}")

    save_file({k: v.contiguous() for k, v in tensors.items()},
              os.path.join(out, "golden.safetensors"))
    cfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    info = {
        "case": os.path.basename(out.rstrip("/")),
        "model_type": model.config.model_type,
        "batch": batch, "seq": seq, "seed": 0,
        "transformers": transformers.__version__, "torch": torch.__version__,
        "peft": peft.__version__,
        "lora": {"r": cfg["r"], "lora_alpha": cfg["lora_alpha"],
                 "note": "adapter written by tune train, loaded with PeftModel.from_pretrained"},
        "note": "base model and adapter written by tune train; references by transformers+PEFT",
    }
    json.dump(info, open(os.path.join(out, "golden.json"), "w"), indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
