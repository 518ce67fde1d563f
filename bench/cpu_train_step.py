#!/usr/bin/python3
"""PyTorch peer of bench/cpu_train_step.cpp: one full fine-tuning step (forward + loss + backward
+ AdamW) of the same Llama shape on the CPU in f32, timed the same way, printing the same JSON
line with "impl": "pytorch".

Plain torch (no transformers): the Llama architecture as transformers' modeling_llama writes it
-- RMSNorm, rotary embeddings with rotate_half, grouped-query attention (matmul + causal mask +
softmax; torch 1.13 has no scaled_dot_product_attention), SwiGLU MLP, untied lm_head -- and
torch.optim.AdamW with its default (foreach) implementation. Run it with Debian's python3-torch:
/usr/bin/python3 bench/cpu_train_step.py --threads N.
"""

import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps))


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    def __init__(self, head_dim, max_positions, theta):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        t = torch.arange(max_positions, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)  # [P, D]
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, q, k, seq):
        cos, sin = self.cos[:seq], self.sin[:seq]  # broadcast over [B, H, T, D]
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = c.heads, c.kv_heads, c.head_dim
        self.q_proj = nn.Linear(c.hidden, c.heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.heads * c.head_dim, c.hidden, bias=False)

    def forward(self, x, rotary, mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = rotary(q, k, t)
        groups = self.heads // self.kv_heads
        k = k.repeat_interleave(groups, dim=1)  # transformers' repeat_kv
        v = v.repeat_interleave(groups, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim) + mask
        probs = F.softmax(scores, dim=-1, dtype=torch.float32)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, t, -1)
        return self.o_proj(out)


class Mlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden, c.intermediate, bias=False)
        self.up_proj = nn.Linear(c.hidden, c.intermediate, bias=False)
        self.down_proj = nn.Linear(c.intermediate, c.hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden, c.eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden, c.eps)
        self.mlp = Mlp(c)

    def forward(self, x, rotary, mask):
        h = x + self.self_attn(self.input_layernorm(x), rotary, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class LlamaForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab, c.hidden)
        self.layers = nn.ModuleList(DecoderBlock(c) for _ in range(c.layers))
        self.norm = RMSNorm(c.hidden, c.eps)
        self.lm_head = nn.Linear(c.hidden, c.vocab, bias=False)
        self.rotary = Rotary(c.head_dim, c.max_positions, c.rope_theta)

    def forward(self, ids):
        t = ids.shape[1]
        mask = torch.full((t, t), float("-inf")).triu(1)  # [T, T], broadcast over [B, H]
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, self.rotary, mask)
        return self.lm_head(self.norm(x))


class Shape:
    """The HF config.json keys the model needs."""

    def __init__(self, cfg):
        assert cfg["model_type"] == "llama", "this peer implements model_type llama"
        assert not cfg.get("tie_word_embeddings", False), "this peer has an untied lm_head"
        self.vocab = cfg["vocab_size"]
        self.hidden = cfg["hidden_size"]
        self.intermediate = cfg["intermediate_size"]
        self.layers = cfg["num_hidden_layers"]
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg.get("num_key_value_heads", self.heads)
        self.head_dim = cfg.get("head_dim", self.hidden // self.heads)
        self.max_positions = cfg.get("max_position_embeddings", 2048)
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.rope_theta = cfg.get("rope_theta", 10000.0)


def init_weights(model, seed):
    # transformers' Llama init: normal(0, 0.02) for Linear and Embedding, RMSNorm weights at 1.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="bench/shapes/llama_20m.json")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="0: torch's default")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    with open(args.shape) as f:
        shape = Shape(json.load(f))
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(shape)
    init_weights(model, args.seed)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01)

    ids = torch.randint(0, shape.vocab, (args.batch, args.seq))
    labels = ids
    # Hugging Face's shift (ForCausalLMLoss): position t predicts labels[t + 1], the last
    # position is ignored, so the logits are used in place without slicing.
    targets = F.pad(labels[:, 1:], (0, 1), value=-100).reshape(-1)

    step_s, phases = [], {"forward": [], "loss": [], "backward": [], "optimizer": []}
    first_loss = last_loss = 0.0
    for s in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(ids)  # [B, T, V]
        t_forward = time.perf_counter() - t0
        loss = F.cross_entropy(logits.view(-1, shape.vocab), targets, ignore_index=-100)
        t_loss = time.perf_counter() - t0
        loss.backward()
        t_backward = time.perf_counter() - t0
        opt.step()
        t_step = time.perf_counter() - t0
        if s == 0:
            first_loss = loss.item()
        last_loss = loss.item()
        if s < args.warmup:
            continue
        step_s.append(t_step)
        phases["forward"].append(t_forward)
        phases["loss"].append(t_loss - t_forward)
        phases["backward"].append(t_backward - t_loss)
        phases["optimizer"].append(t_step - t_backward)

    tokens = args.batch * args.seq
    step = statistics.median(step_s)
    out = {
        "impl": "pytorch",
        "params": n_params,
        "tokens_per_step": tokens,
        "median_step_s": step,
        "tokens_per_s": tokens / step,
        "threads": torch.get_num_threads(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "min_step_s": min(step_s),
        "max_step_s": max(step_s),
        "phases_s": {k: statistics.median(v) for k, v in phases.items()},
        "loss_first": first_loss,
        "loss_last": last_loss,
        "torch": torch.__version__,
        "shape": args.shape,
        "batch": args.batch,
        "seq": args.seq,
        "steps": args.steps,
        "warmup": args.warmup,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
