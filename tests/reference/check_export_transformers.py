#!/usr/bin/env python3
"""Loads tune.cpp's exports in Hugging Face transformers and PEFT and compares logits.

For each golden case (tests/golden/<case>: a base model and a PEFT adapter) the exports written by
the ExportGolden unit tests with TUNE_EXPORT_DUMP=DUMP lie in DUMP/<case>/:
  merged/          `hf` export, adapter merged (f32), one model.safetensors
  merged_sharded/  the same, split into shards with model.safetensors.index.json
  peft/            `peft` export, the adapter alone
  tune_logits.safetensors  input_ids and the logits tune computed: base_plus_adapter (tune with
                   the adapter unmerged) and merged (tune on merged/)

Compared, on the golden input_ids, in f32 on the CPU:
  transformers(merged)         vs PEFT(base + adapter)
  transformers(merged_sharded) vs PEFT(base + adapter)
  PEFT(base + peft export)     vs PEFT(base + adapter)
  tune(base + adapter), tune(merged) vs PEFT(base + adapter), and tune(merged) vs
  transformers(merged)
Each as max|a - b| / max|b| and ||a - b|| / ||b||; every one must be <= 1e-5. transformers must
load the merged folders with no missing or unexpected tensor.

  python3 check_export_transformers.py --golden tests/golden --dump DUMP [CASE ...]
Exits 0 when every case passes, prints one table per case.

With --cli MODEL CLI_OUT it also checks exports the `tune export` command wrote of MODEL (a model
folder with a tokenizer and adapter/, e.g. tests/reference/make_byte_tokenizer_model.py's):
CLI_OUT/merged (hf, f32), CLI_OUT/merged_bf16 (hf --dtype bf16) and CLI_OUT/peft. Each loads
with its tokenizer (AutoTokenizer) and in config.json's dtype; on a tokenized prompt, merged and
the PEFT export give PEFT(MODEL + adapter)'s logits to 1e-5, merged_bf16 to bf16 precision
(2e-2 of the largest logit).
"""
import argparse
import os
import sys

import peft
import torch
import transformers
from safetensors.torch import load_file

TOLERANCE = 1e-5
CASES = ["llama_gqa", "llama3_rope_tied", "mistral_swa", "qwen2_bias", "qwen3_qknorm",
         "gpt2_tiny", "tune_trained_peft"]


def load(path):
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}  # missing, unexpected, mismatched, errors
    return model.eval(), problems


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.reshape(-1, model.config.vocab_size).float()


def errors(a, b):
    a, b = a.double(), b.double()
    max_rel = ((a - b).abs().max() / b.abs().max()).item()
    norm_rel = (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()
    return max_rel, norm_rel


def check_case(golden, dump, case):
    base_dir = os.path.join(golden, case)
    out = os.path.join(dump, case)
    tune = load_file(os.path.join(out, "tune_logits.safetensors"))
    ids = tune["input_ids"].long()
    rows, ok = [], True

    base, problems = load(base_dir)
    reference = logits_of(peft.PeftModel.from_pretrained(base, os.path.join(base_dir, "adapter")),
                          ids)
    golden_ref = load_file(os.path.join(base_dir, "golden.safetensors"))["lora.logits"]
    rows.append(("PEFT(base+adapter) now vs golden lora.logits",
                 errors(reference, golden_ref.reshape(reference.shape).float())))

    merged = {}
    for folder in ("merged", "merged_sharded"):
        model, problems = load(os.path.join(out, folder))
        if problems:
            print(f"  {case}/{folder}: transformers reports {problems}")
            ok = False
        merged[folder] = logits_of(model, ids)
        rows.append((f"transformers({folder}) vs PEFT(base+adapter)",
                     errors(merged[folder], reference)))

    fresh, _ = load(base_dir)
    exported = logits_of(peft.PeftModel.from_pretrained(fresh, os.path.join(out, "peft")), ids)
    rows.append(("PEFT(base+peft export) vs PEFT(base+adapter)", errors(exported, reference)))

    rows.append(("tune(base+adapter) vs PEFT(base+adapter)",
                 errors(tune["base_plus_adapter"].float(), reference)))
    rows.append(("tune(merged) vs PEFT(base+adapter)", errors(tune["merged"].float(), reference)))
    rows.append(("tune(merged) vs transformers(merged)",
                 errors(tune["merged"].float(), merged["merged"])))
    base_logits = tune["base"].float()
    rows.append(("(adapter effect: tune base vs PEFT(base+adapter))",
                 errors(base_logits, reference)))

    print(f"{case}")
    print(f"  {'comparison':<52} {'max rel':>10} {'norm rel':>10}")
    for i, (what, (max_rel, norm_rel)) in enumerate(rows):
        informative = what.startswith("(")
        passed = informative or (max_rel <= TOLERANCE and norm_rel <= TOLERANCE)
        if not informative and i == 0:
            passed = norm_rel <= 1e-4  # golden.safetensors was made on the GPU, by another run
        ok = ok and passed
        mark = "" if informative else ("ok" if passed else "FAIL")
        print(f"  {what:<52} {max_rel:10.3e} {norm_rel:10.3e}  {mark}")
    # The adapter must matter, or the comparisons could not fail.
    if rows[-1][1][0] < 1e-3:
        print("  FAIL: the adapter barely changes the logits")
        ok = False
    print(f"  {'PASS' if ok else 'FAIL'}\n")
    return ok


def check_cli(model_dir, cli_out):
    tokenizer = transformers.AutoTokenizer.from_pretrained(os.path.join(cli_out, "merged"))
    ids = tokenizer("Hello there, how are you today?", return_tensors="pt")["input_ids"]
    base, _ = load(model_dir)
    reference = logits_of(peft.PeftModel.from_pretrained(base, os.path.join(model_dir, "adapter")),
                          ids)
    rows, ok = [], True
    for folder, dtype, tolerance in (("merged", torch.float32, TOLERANCE),
                                     ("merged_bf16", torch.bfloat16, 2e-2)):
        path = os.path.join(cli_out, folder)
        transformers.AutoTokenizer.from_pretrained(path)  # the copied tokenizer files load
        model, problems = transformers.AutoModelForCausalLM.from_pretrained(
            path, dtype="auto", attn_implementation="eager", output_loading_info=True)
        problems = {k: v for k, v in problems.items() if v}
        if problems or model.dtype != dtype:
            print(f"  {folder}: dtype {model.dtype} (expected {dtype}), loading reports {problems}")
            ok = False
        rows.append((f"transformers(cli {folder}) vs PEFT(base+adapter)",
                     errors(logits_of(model.eval(), ids), reference), tolerance))
    fresh, _ = load(model_dir)
    exported = peft.PeftModel.from_pretrained(fresh, os.path.join(cli_out, "peft"))
    rows.append(("PEFT(base+cli peft) vs PEFT(base+adapter)", errors(logits_of(exported, ids),
                                                                    reference), TOLERANCE))
    print(f"tune export (CLI) of {model_dir}, {ids.shape[1]} tokens")
    for what, (max_rel, norm_rel), tolerance in rows:
        passed = max_rel <= tolerance and norm_rel <= tolerance
        ok = ok and passed
        print(f"  {what:<52} {max_rel:10.3e} {norm_rel:10.3e}  {'ok' if passed else 'FAIL'}")
    print(f"  {'PASS' if ok else 'FAIL'}\n")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--golden", required=True, help="tests/golden")
    parser.add_argument("--dump", required=True, help="TUNE_EXPORT_DUMP of the unit tests")
    parser.add_argument("--cli", nargs=2, metavar=("MODEL", "CLI_OUT"),
                        help="also check the exports `tune export` wrote of MODEL")
    parser.add_argument("cases", nargs="*", default=CASES)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__}, f32 on the CPU\n")
    results = [check_case(args.golden, args.dump, c) for c in args.cases]
    if args.cli:
        results.append(check_cli(*args.cli))
    print("PASS" if all(results) else "FAIL")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
