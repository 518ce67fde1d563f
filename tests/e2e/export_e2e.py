#!/usr/bin/env python3
"""End-to-end tests of `tune export` as users run it: the real binary on a model folder with a
tokenizer and a LoRA adapter (tests/reference/make_byte_tokenizer_model.py's, from qwen3_qknorm).

    export_e2e.py --tune PATH/TO/tune --model MODEL_DIR --work DIR CASE

Cases:
  hf         merged export (one file and sharded): greedy generation from it equals generation
             from base + adapter; the adapted weights changed and the others are byte-identical;
             tokenizer files, chat template and generation_config.json are copied; config.json
             says the dtype; a bf16 re-export halves the weights and still loads
  peft       the adapter alone: generation with it equals generation with the original adapter
  overwrite  an existing --out is refused without --overwrite and replaced with it; a folder that
             is not an export is never replaced
  errors     bad input gives a clear message naming what is wrong, exit code 1, nothing written
  progress   on a terminal, a progress line with tensors written / total and MB/s

Only the Python standard library is used (Debian's python3).
"""
import argparse
import json
import os
import pty
import shutil
import struct
import subprocess
import sys


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


class Env:
    def __init__(self, tune, model, work):
        self.tune, self.model, self.work = tune, model, work
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)

    def path(self, name):
        return os.path.join(self.work, name)

    def run(self, *args, ok=True):
        p = subprocess.run([self.tune, *args], capture_output=True, text=True, timeout=300)
        if ok and p.returncode != 0:
            fail(f"tune {' '.join(args)} exited {p.returncode}: {p.stderr}")
        return p

    def export(self, out, *extra):
        return self.run("export", "--model", self.model, "--out", self.path(out), *extra)

    def generate(self, model, *extra):
        p = self.run("generate", "--model", model, "--prompt", "Hello there", "--max-new-tokens",
                     "24", "--json", *extra)
        return json.loads(p.stdout)["completion"]

    def leftovers(self):
        return [n for n in os.listdir(self.work) if ".tmp." in n or ".old." in n]


def safetensors(path):
    """{name: (dtype, shape, bytes)} of one file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in header.items()}


def weights(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    if not os.path.exists(index):
        return safetensors(os.path.join(folder, "model.safetensors"))
    out = {}
    for shard in sorted(set(json.load(open(index))["weight_map"].values())):
        out.update(safetensors(os.path.join(folder, shard)))
    return out


def same_file(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def case_hf(env):
    reference = env.generate(env.model, "--adapter", os.path.join(env.model, "adapter"))
    if env.generate(env.model) == reference:
        fail("the adapter does not change the generation, so this case could not fail")
    base = weights(env.model)
    env.export("merged", "--adapter", os.path.join(env.model, "adapter"), "--format", "hf")
    env.export("sharded", "--adapter", os.path.join(env.model, "adapter"), "--format", "hf",
               "--max-shard-size", "100KB")
    for folder in ("merged", "sharded"):
        got = env.generate(env.path(folder))
        if got != reference:
            fail(f"{folder}: generation {got!r} differs from base + adapter {reference!r}")
    shards = [n for n in os.listdir(env.path("sharded")) if n.startswith("model-0")]
    if len(shards) < 3 or os.path.exists(env.path("sharded/model.safetensors")):
        fail(f"--max-shard-size 100KB wrote {sorted(os.listdir(env.path('sharded')))}")
    for shard in shards:
        size = sum(len(t[2]) for t in safetensors(env.path("sharded/" + shard)).values())
        if size > 100_000 and len(safetensors(env.path("sharded/" + shard))) > 1:
            fail(f"{shard} holds {size} bytes of tensors, over the 100KB limit")

    merged = weights(env.path("merged"))
    if merged.keys() != base.keys() or weights(env.path("sharded")) != merged:
        fail("the merged exports do not hold the base model's tensors")
    for name, (dtype, shape, data) in merged.items():
        adapted = any(m in name for m in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                          "up_proj", "down_proj"))
        if (data != base[name][2]) != adapted:
            fail(f"{name}: {'unchanged although adapted' if adapted else 'changed'}")
    for f in os.listdir(env.model):
        if f.startswith("tokenizer") or f in ("generation_config.json", "chat_template.jinja"):
            if not same_file(os.path.join(env.model, f), env.path("merged/" + f)):
                fail(f"{f} was not copied as it is")
    if os.path.exists(env.path("merged/adapter")) or \
            os.path.exists(env.path("merged/adapter_config.json")):
        fail("the merged folder carries the adapter along")
    if json.load(open(env.path("merged/config.json")))["dtype"] != "float32":
        fail("config.json's dtype is not float32")

    env.export("bf16", "--adapter", os.path.join(env.model, "adapter"), "--format", "hf",
               "--dtype", "bf16")
    bf16 = weights(env.path("bf16"))
    if any(t[0] != "BF16" for t in bf16.values()):
        fail("--dtype bf16 wrote tensors of another dtype")
    if json.load(open(env.path("bf16/config.json")))["dtype"] != "bfloat16":
        fail("config.json's dtype is not bfloat16")
    env.generate(env.path("bf16"))  # loads and runs
    if env.leftovers():
        fail(f"temporary folders left: {env.leftovers()}")
    print(f"merged and sharded ({len(shards)} shards) exports generate {reference!r} as "
          "base + adapter does")


def case_peft(env):
    adapter = os.path.join(env.model, "adapter")
    reference = env.generate(env.model, "--adapter", adapter)
    env.export("peft", "--adapter", adapter, "--format", "peft")
    got = env.generate(env.model, "--adapter", env.path("peft"))
    if got != reference:
        fail(f"generation with the exported adapter {got!r} differs from {reference!r}")
    if safetensors(env.path("peft/adapter_model.safetensors")) != \
            safetensors(os.path.join(adapter, "adapter_model.safetensors")):
        fail("the exported adapter's tensors differ from the original's")
    env.export("peft16", "--adapter", adapter, "--format", "peft", "--dtype", "f16")
    if any(t[0] != "F16" for t in safetensors(env.path("peft16/adapter_model.safetensors"))
           .values()):
        fail("--dtype f16 did not convert the adapter")
    print(f"the PEFT export generates {reference!r} as the original adapter does")


def case_overwrite(env):
    env.export("out", "--format", "hf")
    p = env.run("export", "--model", env.model, "--format", "hf", "--dtype", "bf16", "--out",
                env.path("out"), ok=False)
    if p.returncode != 1 or "exists; pass --overwrite" not in p.stderr:
        fail(f"an existing --out was not refused: {p.returncode} {p.stderr}")
    if json.load(open(env.path("out/config.json")))["dtype"] != "float32":
        fail("a refused export changed --out")
    env.export("out", "--format", "hf", "--dtype", "bf16", "--overwrite")
    if json.load(open(env.path("out/config.json")))["dtype"] != "bfloat16":
        fail("--overwrite did not replace --out")
    os.makedirs(env.path("notes"))
    open(env.path("notes/todo.txt"), "w").write("keep")
    p = env.run("export", "--model", env.model, "--format", "hf", "--out", env.path("notes"),
                "--overwrite", ok=False)
    if p.returncode != 1 or "not replacing it" not in p.stderr or \
            not os.path.exists(env.path("notes/todo.txt")):
        fail(f"a folder that is not an export was replaced: {p.stderr}")
    p = env.run("export", "--model", env.model, "--format", "hf", "--out", env.model,
                "--overwrite", ok=False)
    if p.returncode != 1 or "is or contains the input folder" not in p.stderr:
        fail(f"--out = --model was not refused: {p.stderr}")
    if env.leftovers():
        fail(f"temporary folders left: {env.leftovers()}")
    print("--out is replaced only with --overwrite, and only when it is an earlier export")


def case_errors(env):
    bad_adapter = env.path("bad_adapter")
    shutil.copytree(os.path.join(env.model, "adapter"), bad_adapter)
    config = json.load(open(os.path.join(bad_adapter, "adapter_config.json")))
    config["target_modules"] = list(config["target_modules"]) + ["c_fc"]
    json.dump(config, open(os.path.join(bad_adapter, "adapter_config.json"), "w"))
    m, out = env.model, env.path("out")
    cases = [
        (["--model", m, "--out", out], "--format is required: hf"),
        (["--model", m, "--format", "onnx", "--out", out], "is not one of hf|peft|gguf"),
        (["--model", m, "--format", "hf"], "--out PATH is required"),
        (["--format", "hf", "--out", out], "--model DIR is required"),
        (["--model", env.path("missing"), "--format", "hf", "--out", out],
         "missing: no such directory"),
        (["--model", m, "--format", "hf", "--dtype", "fp8", "--out", out],
         "\"fp8\" is not one of bf16|f16|f32"),
        (["--model", m, "--format", "hf", "--quant", "q4_k_m", "--out", out],
         "--quant is a GGUF option"),
        (["--model", m, "--format", "peft", "--out", out], "pass --adapter DIR"),
        (["--model", m, "--adapter", os.path.join(m, "adapter"), "--format", "peft",
          "--max-shard-size", "1GB", "--out", out], "--max-shard-size splits the weight files"),
        (["--model", m, "--format", "hf", "--max-shard-size", "5 parsecs", "--out", out],
         "is not a size"),
        (["--model", m, "--format", "hf", "--mdoel", m, "--out", out], "Did you mean \"model\""),
        (["--model", m, "--format", "hf", "--out", out, "extra"], "unexpected argument \"extra\""),
        (["--model", m, "--adapter", bad_adapter, "--format", "hf", "--out", out],
         "target_modules lists \"c_fc\", which matches no module of this model"),
        (["--model", os.path.join(m, "adapter"), "--format", "hf", "--out", out],
         "config.json"),
    ]
    for args, expected in cases:
        p = env.run("export", *args, ok=False)
        if p.returncode != 1 or expected not in p.stderr or \
                not p.stderr.startswith("tune export: error: "):
            fail(f"tune export {' '.join(args)}: exit {p.returncode}, expected a message with "
                 f"{expected!r}, got {p.stderr!r}")
    if os.path.exists(out) or env.leftovers():
        fail(f"a failed export wrote something: {os.listdir(env.work)}")
    print(f"{len(cases)} bad command lines each get a clear message and write nothing")


def case_progress(env):
    master, slave = pty.openpty()
    p = subprocess.run([env.tune, "export", "--model", env.model, "--format", "hf",
                        "--max-shard-size", "100KB", "--out", env.path("out")],
                       stderr=slave, stdout=subprocess.DEVNULL, timeout=300)
    os.close(slave)
    text = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        text += chunk
    os.close(master)
    text = text.decode()
    n = len(weights(env.path("out")))
    if p.returncode != 0 or f"{n}/{n} tensors" not in text or "MB/s" not in text:
        fail(f"no progress line on a terminal: {text!r}")
    quiet = env.run("export", "--model", env.model, "--format", "hf", "--out",
                    env.path("quiet"))
    if "tensors" in quiet.stderr:
        fail(f"a progress line went to a pipe: {quiet.stderr!r}")
    print("a terminal gets a progress line, a pipe only the summary")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tune", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("case", choices=["hf", "peft", "overwrite", "errors", "progress"])
    args = parser.parse_args()
    env = Env(os.path.abspath(args.tune), os.path.abspath(args.model), os.path.abspath(args.work))
    globals()["case_" + args.case](env)
    print("PASS")


if __name__ == "__main__":
    main()
