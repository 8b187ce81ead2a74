#!/usr/bin/env python3
"""An independent PyTorch eager implementation of the SoME model and training step, for timing.

Written from docs/design.md, not from the C++: decoder-only transformer (tied embeddings,
pre-norm blocks with RMSNorm, causal attention with rotary positions through
scaled_dot_product_attention), SoME layers (linear query network, cosine scores against the
keys, top-k, softmax of the clamped selected scores, frozen experts, Knowledge Gravity
statistics accumulated per forward and applied after the optimizer step), AdamW with weight
decay on matrices and global-norm clipping. Tokens are random (the data pipeline is not timed).

The experts run the way a PyTorch user writes them: `--experts loop` (one GEMM pair per expert
with tokens, as in Hugging Face's Mixtral) or `--experts grouped` (torch._grouped_mm, as in
torchtitan). Prints one JSON line: tokens/s (best window), step ms, the shape.

  bench/eager_reference.py --d-model 256 --layers 4 --heads 4 --experts-count 64 --d-expert 256 \
      --top-k 2 --micro-batch 16 --global-batch 16 --seq-len 128 --steps 8 --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F  # noqa: N812 (the universal alias)
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, 1e-6)


class Attention(nn.Module):
    def __init__(self, d: int, heads: int, max_len: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        head = d // heads
        inv_freq = 1.0 / 10000 ** (torch.arange(0, head, 2, dtype=torch.float64) / head)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def rotate(self, x, t):
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        c, s = self.cos[:t], self.sin[:t]
        return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], -1)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(self.rotate(q, t), self.rotate(k, t), v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class SoMELayer(nn.Module):
    def __init__(self, d: int, experts: int, d_expert: int, top_k: int, compute: str):
        super().__init__()
        self.top_k, self.compute = top_k, compute
        self.query = nn.Linear(d, d)
        keys = torch.randn(experts, d)
        self.register_buffer("keys", keys / keys.norm(dim=1, keepdim=True))
        self.register_buffer("usage", torch.ones(experts))
        bound = 1 / math.sqrt(d)
        self.register_buffer("w_down", torch.empty(experts, d_expert, d).uniform_(-bound, bound))
        self.register_buffer("w_up", torch.empty(experts, d, d_expert).uniform_(-1 / math.sqrt(d_expert),
                                                                                1 / math.sqrt(d_expert)))
        self.n = torch.zeros(experts)
        self.S = torch.zeros(experts, d)
        self.C = torch.zeros(experts, experts)

    def forward(self, x):  # (N, d)
        q = self.query(x)
        with torch.autocast("cpu", enabled=False):  # routing in fp32 under any autocast
            qn = F.normalize(q.float(), dim=-1)
            scores = qn @ F.normalize(self.keys, dim=-1).T  # (N, E)
            idx = scores.detach().topk(self.top_k, dim=-1).indices  # (N, k)
            gates = torch.softmax(torch.clamp(scores.gather(1, idx) / 0.3, -10, 10), -1)
        with torch.no_grad():  # Knowledge Gravity statistics
            flat = idx.reshape(-1)
            self.n.index_add_(0, flat, torch.ones(flat.numel()))
            self.S.index_add_(0, flat, qn.detach().repeat_interleave(self.top_k, 0))
            pairs = idx.unsqueeze(2) * self.n.numel() + idx.unsqueeze(1)
            off = ~torch.eye(self.top_k, dtype=torch.bool).reshape(-1)
            self.C.view(-1).index_add_(0, pairs.reshape(len(idx), -1)[:, off].reshape(-1),
                                       torch.ones(len(idx) * self.top_k * (self.top_k - 1)))
        order = idx.reshape(-1).argsort(stable=True)
        token = order // self.top_k
        counts = torch.bincount(idx.reshape(-1), minlength=self.n.numel())
        rows = x[token]  # (N*k, d) sorted by expert
        if self.compute == "grouped":
            offs = counts.cumsum(0).to(torch.int32)
            down, up = self.w_down, self.w_up
            if torch.is_autocast_enabled("cpu"):  # autocast has no rule for _grouped_mm: cast by hand, once
                if getattr(self, "_bf16", None) is None:
                    self._bf16 = (down.bfloat16(), up.bfloat16())
                down, up, rows = *self._bf16, rows.bfloat16()
            h = F.gelu(torch._grouped_mm(rows, down.transpose(1, 2), offs=offs))
            out = torch._grouped_mm(h, up.transpose(1, 2), offs=offs)
        else:
            outs, start = [], 0
            for e, c in enumerate(counts.tolist()):
                if c:
                    outs.append(F.gelu(rows[start:start + c] @ self.w_down[e].T) @ self.w_up[e].T)
                    start += c
            out = torch.cat(outs)
        weighted = out * gates.reshape(-1)[order].unsqueeze(1)  # fp32 (the gates')
        return torch.zeros(x.shape, dtype=weighted.dtype).index_add(0, token, weighted).to(x.dtype)

    @torch.no_grad()
    def gravity(self, alpha=0.01, beta=0.002, delta=0.001, rho=0.99):
        e = self.n.numel()
        share = self.n * e / self.n.sum().clamp_min(1)
        self.usage.mul_(rho).add_(share, alpha=1 - rho)
        inertia = (1 / (1 + self.usage)).unsqueeze(1)
        old = self.keys.clone()
        pull = torch.where((self.n > 0).unsqueeze(1), self.S / self.n.clamp_min(1).unsqueeze(1) - old, 0)
        c = self.C.sum(1)
        peer = torch.where((c > 0).unsqueeze(1), self.C @ old / c.clamp_min(1).unsqueeze(1) - old, 0)
        self.keys.add_(alpha * inertia * pull + beta * inertia * peer)
        q = torch.quantile(self.usage, 0.1)
        decayed = (self.usage <= q) & (self.usage < self.usage.max())
        self.keys.mul_(torch.where(decayed, 1 - delta, 1.0).unsqueeze(1))
        for t in (self.n, self.S, self.C):
            t.zero_()


class Block(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.attn_norm, self.ffn_norm = RMSNorm(args.d_model), RMSNorm(args.d_model)
        self.attn = Attention(args.d_model, args.heads, args.seq_len)
        self.ffn = SoMELayer(args.d_model, args.experts_count, args.d_expert, args.top_k, args.experts)

    def forward(self, x):
        h = x + self.attn(self.attn_norm(x))
        return h + self.ffn(self.ffn_norm(h).reshape(-1, h.shape[-1])).view_as(h)


class Model(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.emb = nn.Embedding(args.vocab, args.d_model)
        nn.init.normal_(self.emb.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(args) for _ in range(args.layers))
        self.norm = RMSNorm(args.d_model)

    def forward(self, tokens, targets):
        x = self.emb(tokens)
        for block in self.blocks:
            x = block(x)
        logits = self.norm(x) @ self.emb.weight.T
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("vocab", 8192), ("d-model", 192), ("layers", 4), ("heads", 4), ("experts-count", 32),
                          ("d-expert", 192), ("top-k", 2), ("micro-batch", 16), ("global-batch", 32),
                          ("seq-len", 128), ("steps", 8), ("warmup", 2), ("threads", 2)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--experts", choices=["loop", "grouped"], default="loop", help="how the experts run")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="bfloat16: the forward under torch.autocast (routing in fp32, as the C++ does)")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = Model(args)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=3e-3, betas=(0.9, 0.95))
    micro = args.global_batch // args.micro_batch

    def step():
        opt.zero_grad(set_to_none=True)
        for _ in range(micro):
            batch = torch.randint(0, args.vocab, (args.micro_batch, args.seq_len + 1))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bfloat16"):
                loss = model(batch[:, :-1], batch[:, 1:])
            (loss / micro).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        for block in model.blocks:
            block.ffn.gravity()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    tokens = args.global_batch * args.seq_len
    print(json.dumps({"implementation": f"pytorch eager ({args.experts} experts)", "torch": torch.__version__,
                      "dtype": args.dtype,
                      "threads": args.threads, "tokens_per_s": tokens * len(times) / sum(times),
                      "step_ms": 1e3 * sum(times) / len(times), "step_ms_best": 1e3 * min(times),
                      "shape": {k: v for k, v in vars(args).items() if k not in ("steps", "warmup", "threads")}}))


if __name__ == "__main__":
    main()
