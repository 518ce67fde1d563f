#!/usr/bin/python3
"""`tune serve` end to end with Python's standard library only (for machines without node):

    serve_e2e.py --tune PATH/TO/tune --model MODEL_DIR [--device cuda] [--dtype f32] [--no-adapter]

MODEL_DIR holds a tokenizer and a PEFT adapter in MODEL_DIR/adapter (make_byte_tokenizer_model.py
makes one). Starts the server on a free port with the adapter as "ad", then checks: greedy chat
on the base model and the adapter equals `tune generate` on the same device, the two differ, 64
concurrent streaming requests (base and adapter mixed) each equal the same request served alone,
and SIGTERM exits 0. With --no-adapter the server serves the base model alone (on CUDA that is
the paged path: KV slots of one pool, graph-replayed decode steps) and every request uses it.
Prints PASS or FAIL lines.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures += 1


def post(port, path, body, stream=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    if not stream:
        return r.status, json.loads(r.read())
    text, finish, chunks = "", None, 0
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunks += 1
        c = json.loads(line[6:])
        for ch in c.get("choices", []):
            text += ch.get("delta", {}).get("content") or ""
            finish = ch.get("finish_reason") or finish
    return r.status, {"text": text, "finish": finish, "chunks": chunks}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tune", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="")
    ap.add_argument("--no-adapter", action="store_true")
    a = ap.parse_args()
    adapter_args = [] if a.no_adapter else ["--adapter", f"ad={a.model}/adapter"]
    placement = ["--device", a.device] + (["--dtype", a.dtype] if a.dtype else [])
    base = os.path.basename(os.path.normpath(a.model))
    t0 = time.time()
    proc = subprocess.Popen([a.tune, "serve", "--model", a.model, "--port", "0"] + adapter_args +
                            placement,
                            stderr=subprocess.PIPE, text=True)
    port = None
    for line in proc.stderr:
        m = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        print("FAIL: tune serve did not start")
        sys.exit(1)
    # The request log keeps coming: drain it, or the server blocks on a full pipe.
    log = []
    reader = threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        def generate(extra):
            out = subprocess.run([a.tune, "generate", "--model", a.model, "--json", "--chat",
                                  "--prompt", "Hi", "--max-new-tokens", "8"] + placement + extra,
                                 check=True, capture_output=True, text=True).stdout
            return json.loads(out)["completion"]

        hi = [{"role": "user", "content": "Hi"}]
        _, b = post(port, "/v1/chat/completions",
                    {"model": base, "messages": hi, "max_tokens": 8, "temperature": 0})
        b_text = b["choices"][0]["message"]["content"]
        check(b_text == generate([]), f"base greedy equals tune generate ({b_text!r})")
        if not a.no_adapter:
            _, ad = post(port, "/v1/chat/completions",
                         {"model": "ad", "messages": hi, "max_tokens": 8, "temperature": 0})
            ad_text = ad["choices"][0]["message"]["content"]
            check(ad_text == generate(["--adapter", f"{a.model}/adapter"]),
                  f"adapter greedy equals tune generate --adapter ({ad_text!r})")
            check(b_text != ad_text, "the adapter's answer differs from the base model's")

        names = [base] if a.no_adapter else [base, "ad"]
        reqs = [{"model": names[i % len(names)], "max_tokens": 16 + i % 4 * 4, "temperature": 0,
                 "messages": [{"role": "user", "content": f"Question {i}: {'abcdefgh'[:1 + i % 8]}?"}]}
                for i in range(64)]
        t = time.time()
        with concurrent.futures.ThreadPoolExecutor(64) as ex:
            together = list(ex.map(lambda r: post(port, "/v1/chat/completions", dict(r, stream=True), True), reqs))
        seconds = time.time() - t
        alone = [post(port, "/v1/chat/completions", r)[1] for r in reqs]
        same = sum(1 for (st, s), w in zip(together, alone)
                   if st == 200 and s["text"] == w["choices"][0]["message"]["content"]
                   and s["finish"] == w["choices"][0]["finish_reason"])
        tokens = sum(w["usage"]["completion_tokens"] for w in alone)
        check(same == 64, f"64 concurrent streams equal the same requests alone ({same}/64)")
        print(f"load: 64 clients, {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.0f} tokens/s "
              f"on {a.device}", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        reader.join(timeout=5)
    check(code == 0, f"SIGTERM: exit 0 (got {code})")
    if code != 0:
        print("".join(log[-6:]), end="")
    print(f"{'PASS' if failures == 0 else 'FAIL'}: serve_e2e on {a.device} ({time.time() - t0:.1f} s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
