#!/usr/bin/env python3
"""End-to-end tests of `tune train` as users run it: the real binary, real files, real signals.

    train_e2e.py --tune PATH/TO/tune --work DIR [--device cuda] CASE

With --device cuda every run trains on the GPU (training.device=cuda, bf16 with f32 masters):
the resume cases then show that CUDA training is deterministic and that its checkpoints (f32
master weights, moments) resume exactly.

Cases:
  resume-lora, resume-full, resume-accum   SIGKILL a run mid-way, --resume it, and require the
                                           metrics.jsonl losses to equal an uninterrupted run's
                                           bit for bit (resume-accum: LoRA with dropout and
                                           gradient accumulation 3)
  interrupt                                Ctrl-C (SIGINT) saves a checkpoint and exits 130;
                                           --resume then matches the uninterrupted run
  accumulation                             micro-batch 1 x 8 accumulation steps gives the same
                                           update as micro-batch 8 x 1, on examples with uneven
                                           numbers of counted tokens
  disk-full                                a checkpoint write that fails (file-size limit, as a
                                           full disk) leaves the previous checkpoint intact and
                                           resumable
  errors                                   bad input: each gives a clear message and loses nothing

Only the Python standard library is used (Debian's python3).
"""
import argparse
import json
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "tiny_llama")


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def write_messages(path, n, seed):
    """Conversations whose answers have very different lengths (uneven counted tokens)."""
    rng = random.Random(seed)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    with open(path, "w") as f:
        for i in range(n):
            q = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
            a = " ".join(rng.choice(words) for _ in range(rng.randint(1, 25)))
            msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            if i % 3 == 0:
                msgs = [{"role": "system", "content": "be brief"}] + msgs
            f.write(json.dumps({"messages": msgs}) + "\n")


class Env:
    def __init__(self, tune, work, device="cpu"):
        self.tune = tune
        self.device = device
        self.work = work
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        self.data = os.path.join(work, "chat.jsonl")
        write_messages(self.data, 48, seed=1)
        self.cache = os.path.join(work, "cache")

    def args(self, out, extra):
        return [self.tune, "train", f"data.path={self.data}", f"data.cache_dir={self.cache}",
                "data.seq_len=96", f"output.dir={out}", "training.log_every=1",
                f"training.device={self.device}"] + extra

    def run(self, out, extra, check=True, **kw):
        p = subprocess.run(self.args(out, extra), capture_output=True, text=True, **kw)
        if check and p.returncode != 0:
            fail(f"tune train {' '.join(extra)} exited {p.returncode}:\n{p.stderr}")
        return p

    def base_model(self):
        """A 'pretrained' model to fine-tune: the tiny Llama after two steps from scratch."""
        out = os.path.join(self.work, "base")
        if not os.path.exists(os.path.join(out, "model.safetensors")):
            self.run(out, ["model.init=scratch", f"model.config={MODEL}", "adapter.type=none",
                           "data.train_on=all", "training.max_steps=2"])
        return out


def losses(out):
    """(step, loss) of every training line of metrics.jsonl, loss as written (exact text)."""
    rows = []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if "loss" in j:
                rows.append((j["step"], repr(j["loss"])))
    return rows


def metrics_steps(out):
    path = os.path.join(out, "metrics.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        steps = [json.loads(l).get("step", 0) for l in f if l.strip().endswith("}")]
    return max(steps, default=0)


def kill_at(env, out, extra, at_step, sig):
    """Starts a run, waits until metrics.jsonl reaches at_step, sends sig; returns the process."""
    p = subprocess.Popen(env.args(out, extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.time() + 300
    while metrics_steps(out) < at_step:
        if p.poll() is not None:
            fail(f"the run ended (exit {p.returncode}) before step {at_step}:\n{p.stderr.read()}")
        if time.time() > deadline:
            p.kill()
            fail("timed out waiting for the run to reach step %d" % at_step)
        time.sleep(0.005)
    p.send_signal(sig)
    _, err = p.communicate(timeout=300)
    return p, err


def check_resume(env, name, extra, total, save_every, kill_step):
    steps = [f"training.max_steps={total}", f"training.save_every={save_every}"]
    ref = os.path.join(env.work, name + "-uninterrupted")
    env.run(ref, extra + steps)
    cut = os.path.join(env.work, name + "-killed")
    p, _ = kill_at(env, cut, extra + steps, kill_step, signal.SIGKILL)
    if p.returncode != -signal.SIGKILL:
        fail(f"expected the run to die by SIGKILL, got exit {p.returncode}")
    if os.path.exists(os.path.join(cut, "adapter_model.safetensors")) or os.path.exists(
            os.path.join(cut, "model.safetensors")):
        fail("the killed run had already finished: nothing was interrupted")
    killed_at = metrics_steps(cut)
    env.run(cut, extra + steps + ["--resume"])
    a, b = losses(ref), losses(cut)
    if a != b:
        diff = [(x, y) for x, y in zip(a, b) if x != y][:5]
        fail(f"{name}: losses differ after resume (first differences {diff}; "
             f"{len(a)} vs {len(b)} lines)")
    if len(a) != total:
        fail(f"{name}: expected {total} loss lines, got {len(a)}")
    print(f"PASS {name}: killed at step {killed_at} (checkpoint every {save_every}), resumed; "
          f"{len(a)} losses identical to the uninterrupted run, last {a[-1][1]}")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        b, e = info["data_offsets"]
        out[name] = struct.unpack("<%df" % ((e - b) // 4), data[b:e])
    return out


def case_accumulation(env):
    base = env.base_model()
    common = [f"model.path={base}", "adapter.type=lora", "adapter.r=4", "data.pack=false",
              "training.max_steps=1", "training.learning_rate=1e-2", "training.max_grad_norm=0",
              "training.scheduler=constant"]
    big = os.path.join(env.work, "mb8")
    small = os.path.join(env.work, "mb1x8")
    env.run(big, common + ["training.micro_batch_size=8",
                           "training.gradient_accumulation_steps=1"])
    env.run(small, common + ["training.micro_batch_size=1",
                             "training.gradient_accumulation_steps=8"])
    a = read_safetensors(os.path.join(big, "adapter_model.safetensors"))
    b = read_safetensors(os.path.join(small, "adapter_model.safetensors"))
    counted = [json.loads(l)["counted_tokens"] for l in open(os.path.join(big, "metrics.jsonl"))
               if '"loss"' in l]
    # The update must be visible (B starts at zero and moves by ~lr), and the two must agree to
    # float rounding.
    worst, moved = 0.0, 0.0
    for name in a:
        for x, y in zip(a[name], b[name]):
            worst = max(worst, abs(x - y))
            if ".lora_B." in name:
                moved = max(moved, abs(x))
    la, lb = losses(big)[0][1], losses(small)[0][1]
    if moved < 1e-3:
        fail(f"the update is too small to compare (max |B| = {moved})")
    if worst > 1e-6:
        fail(f"accumulation differs: max |difference| {worst} (update size {moved})")
    if abs(float(la) - float(lb)) > 1e-6:
        fail(f"step losses differ: {la} vs {lb}")
    print(f"PASS accumulation: 1x8 vs 8x1 max weight difference {worst:.2e} (update {moved:.2e}),"
          f" loss {la} vs {lb}, {counted[0]} counted tokens")


def case_interrupt(env):
    base = env.base_model()
    extra = [f"model.path={base}", "training.max_steps=30", "training.save_every=100"]
    ref = os.path.join(env.work, "int-ref")
    env.run(ref, extra)
    cut = os.path.join(env.work, "int-cut")
    p, err = kill_at(env, cut, extra, 5, signal.SIGINT)
    if p.returncode != 130:
        fail(f"Ctrl-C: expected exit 130, got {p.returncode}:\n{err}")
    if "checkpoint" not in err or "--resume" not in err:
        fail("Ctrl-C: the message should name the checkpoint and --resume:\n" + err)
    ckpts = os.listdir(os.path.join(cut, "checkpoints"))
    if len(ckpts) != 1:
        fail(f"Ctrl-C: expected one checkpoint, found {ckpts}")
    env.run(cut, extra + ["--resume"])
    if losses(ref) != losses(cut):
        fail("Ctrl-C: losses after resume differ from the uninterrupted run")
    print(f"PASS interrupt: Ctrl-C saved {ckpts[0]}, exit 130, resume identical "
          f"({len(losses(ref))} steps)")


def case_disk_full(env):
    base = env.base_model()
    # A constant rate: the schedule must not depend on max_steps, which grows from 2 to 4.
    extra = [f"model.path={base}", "adapter.type=none", "training.save_every=2",
             "training.scheduler=constant"]
    out = os.path.join(env.work, "full")
    env.run(out, extra + ["training.max_steps=2"])
    ckpt = os.path.join(out, "checkpoints", "step-00000002")
    before = {f: open(os.path.join(ckpt, f), "rb").read() for f in os.listdir(ckpt)}
    size = len(before["state.safetensors"])

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    p = env.run(out, extra + ["training.max_steps=4", "--resume"], check=False,
                preexec_fn=limit)
    if p.returncode == 0:
        fail("the run should fail when its checkpoint cannot be written")
    if "could not write checkpoint" not in p.stderr or "step-00000002 is intact" not in p.stderr:
        fail("disk full: unclear message:\n" + p.stderr)
    after = {f: open(os.path.join(ckpt, f), "rb").read() for f in os.listdir(ckpt)}
    if after != before:
        fail("disk full: the previous checkpoint changed")
    left = sorted(os.listdir(os.path.join(out, "checkpoints")))
    if left != ["step-00000002"]:
        fail(f"disk full: expected only step-00000002 to remain, found {left}")
    env.run(out, extra + ["training.max_steps=4", "--resume"])
    ref = os.path.join(env.work, "full-ref")
    env.run(ref, extra + ["training.max_steps=4"])
    if losses(ref) != losses(out):
        fail("disk full: resumed losses differ from an uninterrupted run")
    print("PASS disk-full: failed write reported, step-00000002 intact, resume identical")


def expect_error(env, name, out, extra, *needles):
    p = env.run(out, extra, check=False)
    if p.returncode == 0:
        fail(f"{name}: expected an error, the run succeeded")
    for n in needles:
        if n not in p.stderr:
            fail(f"{name}: message lacks {n!r}:\n{p.stderr}")
    print(f"PASS error {name}: {p.stderr.strip().splitlines()[-1][:160]}")


def case_errors(env):
    base = env.base_model()
    w = env.work
    m = [f"model.path={base}", "training.max_steps=2"]
    expect_error(env, "unknown-key", os.path.join(w, "e1"), m + ["training.max_step=3"],
                 "unknown option \"training.max_step\"", "training.max_steps")
    cfg = os.path.join(w, "bad.yaml")
    with open(cfg, "w") as f:
        f.write("model:\n  path: %s\ntraining:\n  lerning_rate: 0.1\n" % base)
    expect_error(env, "unknown-key-yaml", os.path.join(w, "e2"), [cfg],
                 "bad.yaml:4", "training.learning_rate")
    bad = os.path.join(w, "bad.jsonl")
    with open(bad, "w") as f:
        f.write('{"messages": [{"role": "user", "content": "hi"}, '
                '{"role": "assistant", "content": "yo"}]}\n{"messages": [oops\n')
    expect_error(env, "malformed-jsonl", os.path.join(w, "e3"), m + [f"data.path={bad}"],
                 "bad.jsonl:2")
    p = env.run(os.path.join(w, "e3b"), m + [f"data.path={bad}", "data.on_error=skip"])
    if "1 malformed records skipped" not in p.stderr:
        fail("on_error skip: the skipped count is not reported:\n" + p.stderr)
    print("PASS error malformed-jsonl skip: counted and reported")
    missing = os.path.join(w, "missing.jsonl")
    with open(missing, "w") as f:
        f.write('{"conversation": []}\n')
    expect_error(env, "missing-field", os.path.join(w, "e4"), m + [f"data.path={missing}"],
                 "missing.jsonl:1", "messages")
    empty = os.path.join(w, "empty.jsonl")
    open(empty, "w").close()
    expect_error(env, "empty-dataset", os.path.join(w, "e5"), m + [f"data.path={empty}"],
                 "empty.jsonl")
    nouser = os.path.join(w, "noassistant.jsonl")
    with open(nouser, "w") as f:
        f.write('{"messages": [{"role": "user", "content": "hello there"}]}\n')
    expect_error(env, "all-masked", os.path.join(w, "e6"), m + [f"data.path={nouser}"],
                 "noassistant.jsonl")
    out = os.path.join(w, "e7")
    env.run(out, m)
    expect_error(env, "existing-run", out, m, "already holds a run", "--resume", "--overwrite")
    expect_error(env, "resume-other-config", out,
                 m + ["training.learning_rate=0.5", "--resume"],
                 "another config", "training.learning_rate")
    env.run(out, m + ["--overwrite"])
    print("PASS error existing-run --overwrite: replaced")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tune", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("case")
    a = ap.parse_args()
    env = Env(os.path.abspath(a.tune), os.path.abspath(a.work), a.device)
    lora = lambda: [f"model.path={env.base_model()}", "adapter.type=lora", "adapter.r=4"]
    if a.case == "resume-lora":
        check_resume(env, "lora", lora(), total=24, save_every=5, kill_step=12)
    elif a.case == "resume-full":
        check_resume(env, "full", [f"model.path={env.base_model()}", "adapter.type=none"],
                     total=24, save_every=5, kill_step=12)
    elif a.case == "resume-accum":
        check_resume(env, "accum", lora() + ["adapter.dropout=0.1",
                                             "training.gradient_accumulation_steps=3",
                                             "training.micro_batch_size=2"],
                     total=16, save_every=4, kill_step=7)
    elif a.case == "accumulation":
        case_accumulation(env)
    elif a.case == "interrupt":
        case_interrupt(env)
    elif a.case == "disk-full":
        case_disk_full(env)
    elif a.case == "errors":
        case_errors(env)
    else:
        fail("unknown case " + a.case)


if __name__ == "__main__":
    main()
