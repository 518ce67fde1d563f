#!/usr/bin/env python3
"""Greedy generation by Hugging Face transformers on the golden models, for tune's
InferReference.GreedyEqualsTransformers test. Run where torch and transformers are installed
(the GPU machine; no network needed):

    make_generate_reference.py [--golden tests/golden] [--out DIR]

For each case folder under --golden (config.json + model.safetensors), loads the model with
transformers in float32 with eager attention on the CPU, and runs `generate` greedily
(do_sample=False, one beam, KV cache on) from three fixed prompts of token ids (lengths 1, 5 and
12, every id below vocab_size). Each run makes exactly max_new_tokens = 20 new tokens: the
model's end-of-sequence ids stay configured but min_new_tokens = 20 rules them out at every step
(transformers' MinNewTokensLengthLogitsProcessor sets their logits to -inf), which tune's
GenerateOptions::min_new_tokens mirrors. Leaving eos_token_id configured and suppressing it
(rather than passing eos_token_id=None) keeps the two sides identical whatever transformers does
with a None.

Writes <out>/<case>/generate.json (out defaults to --golden):
    {"transformers": version, "torch": version, "max_new_tokens": 20, "min_new_tokens": 20,
     "eos_token_id": [ids ruled out], "prompts": [[ids]], "outputs": [[new ids]],
     "margins": [[top-1 minus top-2 processed score per step]]}
margins let the test tell a real difference from a near-tie decided by float rounding.
"""
import argparse
import json
import os

import torch
import transformers

MAX_NEW_TOKENS = 20
PROMPT_LENGTHS = (1, 5, 12)


def prompts_for(vocab):
    # Fixed ids, spread over the vocabulary; 1 first as a BOS-like start.
    base = [1, 17, 255, 3, 400, 123, 77, 311, 5, 42, 499, 260]
    return [[i % vocab for i in base[:n]] for n in PROMPT_LENGTHS]


def eos_ids(model):
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = model.config.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def run_case(case_dir, out_dir):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        case_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    eos = eos_ids(model)
    result = {"transformers": transformers.__version__, "torch": torch.__version__,
              "max_new_tokens": MAX_NEW_TOKENS, "min_new_tokens": MAX_NEW_TOKENS,
              "eos_token_id": eos, "prompts": [], "outputs": [], "margins": []}
    for prompt in prompts_for(model.config.vocab_size):
        ids = torch.tensor([prompt], dtype=torch.long)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=1,
                max_new_tokens=MAX_NEW_TOKENS, min_new_tokens=MAX_NEW_TOKENS,
                eos_token_id=eos if eos else None, pad_token_id=eos[0] if eos else 0,
                use_cache=True, output_scores=True, return_dict_in_generate=True)
        new = out.sequences[0, len(prompt):].tolist()
        assert len(new) == MAX_NEW_TOKENS, f"{case_dir}: {len(new)} new tokens, expected 20"
        margins = []
        for step, scores in enumerate(out.scores):
            top2 = torch.topk(scores[0].double(), 2).values
            assert int(torch.argmax(scores[0])) == new[step]
            margins.append(float(top2[0] - top2[1]))
        result["prompts"].append(prompt)
        result["outputs"].append(new)
        result["margins"].append(margins)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "generate.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"{path}: {[len(o) for o in result['outputs']]} tokens, "
          f"smallest margin {min(min(m) for m in result['margins']):.3g}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--golden", default=os.path.join(here, "..", "golden"))
    parser.add_argument("--out", default=None, help="output root (default: --golden)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for name in sorted(os.listdir(args.golden)):
        case_dir = os.path.join(args.golden, name)
        if not os.path.isfile(os.path.join(case_dir, "config.json")):
            continue
        run_case(case_dir, os.path.join(args.out or args.golden, name))


if __name__ == "__main__":
    main()
