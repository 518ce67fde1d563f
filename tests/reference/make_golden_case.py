#!/usr/bin/env python3
"""Makes a golden case for `tune check-golden` from a tiny random Hugging Face model: run on the
GPU machine, where torch and transformers are installed (no network needed).

    make_golden_case.py gpt2_tiny OUT_DIR

Writes OUT_DIR/<case>/ in shared/golden/README.md's layout: config.json, model.safetensors and
generation_config.json as save_pretrained writes them; golden.json (what was computed, with the
hyperparameters); golden.safetensors with
  input_ids [B,T], labels [B,T] (-100 = ignored; transformers shifts them inside the loss),
  logits [B,T,V], loss [], hidden.i [B,T,C] (0 = embeddings, last = after the final norm),
  grad.<hf name> for every parameter (full fine-tuning, one backward of the mean loss),
  lora.logits, lora.loss, lora.weight.<peft name>, lora.grad.<peft name>: the same batch through
  PEFT's LoRA (r 4, alpha 8, no dropout; lora_B drawn N(0, 0.05^2) so that A and B both get
  gradients; base frozen), the adapter saved in adapter/ as PEFT saves it,
  adamw.losses [3] and adamw.final.<hf name>: three torch.optim.AdamW steps (lr 1e-2, betas
  0.9/0.95, eps 1e-8, weight decay 0.1, one group: everything decayed) on the same batch.
The model runs in float32 with eager attention on the CPU (deterministic reductions) with
dropout off.

Cases:
  gpt2_tiny  GPT2LMHeadModel, n_embd 64, n_layer 2, n_head 4, vocab 512, n_positions 64, tied
             head; LayerNorm weights and biases and every projection bias drawn at random (not
             the 1/0 init) so that each of them shows in the logits and gets a gradient.
"""
import json
import os
import shutil
import sys

import peft
import torch
import transformers
from safetensors.torch import save_file

BATCH, SEQ, SEED = 2, 16, 5
LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0}
LORA_TARGETS = {"gpt2": ["c_attn", "c_proj", "c_fc"]}
ADAMW = {"lr": 1e-2, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1, "steps": 3}


def gpt2_tiny():
    config = transformers.GPT2Config(
        vocab_size=512, n_embd=64, n_layer=2, n_head=4, n_positions=64,
        activation_function="gelu_new", layer_norm_epsilon=1e-5,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name or name.startswith("transformer.ln_f"):
                p.copy_((1.0 if name.endswith(".weight") else 0.0) + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
    return model


CASES = {"gpt2_tiny": gpt2_tiny}


def forward(model, ids, labels):
    return model(input_ids=ids, labels=labels, output_hidden_states=True)


def main():
    case, out_root = sys.argv[1], sys.argv[2]
    torch.manual_seed(SEED)
    model = CASES[case]()
    model.config._attn_implementation = "eager"
    model = model.float().cpu()
    model.train()  # dropout is 0: train and eval agree; train matches what a trainer does

    out = os.path.join(out_root, case)
    if os.path.exists(out):
        shutil.rmtree(out)
    model.save_pretrained(out)  # config.json, model.safetensors, generation_config.json
    # Reload what was saved, as tune will, so the reference comes from exactly those weights.
    model = transformers.AutoModelForCausalLM.from_pretrained(
        out, dtype=torch.float32, attn_implementation="eager")
    model.train()

    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (BATCH, SEQ))
    labels = ids.clone()
    labels[0, :3] = -100
    labels[1, 9:12] = -100
    tensors = {"input_ids": ids, "labels": labels}

    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.zero_grad()
    result = forward(model, ids, labels)
    result.loss.backward()
    tensors["logits"] = result.logits.detach()
    tensors["loss"] = result.loss.detach()
    for i, h in enumerate(result.hidden_states):
        tensors[f"hidden.{i}"] = h.detach()
    names = []
    for name, p in model.named_parameters():
        names.append(name)
        tensors[f"grad.{name}"] = p.grad.detach().clone()

    # LoRA through PEFT on a fresh copy of the saved model.
    base = transformers.AutoModelForCausalLM.from_pretrained(
        out, dtype=torch.float32, attn_implementation="eager")
    targets = LORA_TARGETS[base.config.model_type]
    lora_config = peft.LoraConfig(
        r=LORA["r"], lora_alpha=LORA["lora_alpha"], lora_dropout=LORA["lora_dropout"],
        target_modules=targets, fan_in_fan_out=base.config.model_type == "gpt2",
        task_type="CAUSAL_LM")
    lora = peft.get_peft_model(base, lora_config)
    lora.train()
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    lora.save_pretrained(os.path.join(out, "adapter"))
    readme = os.path.join(out, "adapter", "README.md")  # PEFT's model card: not part of a case
    if os.path.exists(readme):
        os.remove(readme)
    out_lora = lora(input_ids=ids, labels=labels)
    out_lora.loss.backward()
    tensors["lora.logits"] = out_lora.logits.detach()
    tensors["lora.loss"] = out_lora.loss.detach()
    for name, p in lora.named_parameters():
        if p.requires_grad:
            key = name.replace(".default", "")
            tensors["lora.weight." + key] = p.detach().clone()
            tensors["lora.grad." + key] = p.grad.detach().clone()

    model.load_state_dict(initial)
    model.zero_grad()
    opt = torch.optim.AdamW(model.parameters(), lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]),
                            eps=ADAMW["eps"], weight_decay=ADAMW["weight_decay"])
    losses = []
    for _ in range(ADAMW["steps"]):
        opt.zero_grad()
        loss = forward(model, ids, labels).loss
        losses.append(loss.item())
        loss.backward()
        opt.step()
    tensors["adamw.losses"] = torch.tensor(losses, dtype=torch.float32)
    for name, p in model.named_parameters():
        tensors[f"adamw.final.{name}"] = p.detach().clone()

    save_file({k: v.contiguous() for k, v in tensors.items()},
              os.path.join(out, "golden.safetensors"))
    info = {
        "case": case,
        "model_type": model.config.model_type,
        "batch": BATCH,
        "seq": SEQ,
        "seed": SEED,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "generator": "tests/reference/make_golden_case.py",
        "loss": "HF causal LM: labels aligned with input_ids, shifted inside, mean over labels != -100",
        "peft": peft.__version__,
        "lora": dict(LORA, targets=targets,
                     note="lora_B set to N(0,0.05^2); tensors named as PEFT saves them"),
        "adamw": dict(ADAMW, note="full fine-tuning of all params; adamw.losses[i] is the loss "
                                  "before step i"),
        "hidden": "hidden.i = output_hidden_states[i] (0 = embeddings, last = after final norm)",
        "parameters": names,
    }
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print(f"{out}: loss {result.loss.item():.6f}, {len(names)} parameters, "
          f"adamw losses {losses}")


if __name__ == "__main__":
    main()
