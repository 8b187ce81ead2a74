#!/usr/bin/env python3
"""Independent PyTorch reference for one MoE-baseline layer step (docs/design.md §10).

Reads moe_reference_io.h5 written by test_reference_export (gate, experts, input, the C++
output, auxiliary loss and gradients), recomputes them here token by token (gelu experts), and
exits non-zero if any tensor differs by more than 1e-5.
"""
import sys

import torch
from compare import compare, load


def main(path):
    t = load(path)
    k, weight = int(t["hparam.top_k"]), float(t["hparam.aux_loss"])
    x = t["x"].clone().requires_grad_(True)
    gate = t["gate"].clone().requires_grad_(True)
    w_down = t["w_down"].clone().requires_grad_(True)
    w_up = t["w_up"].clone().requires_grad_(True)
    E = gate.shape[0]
    N = x.shape[0]

    p = torch.softmax(x @ gate.T, dim=1)                      # (N, E)
    idx = torch.topk(p.detach(), k, dim=1).indices            # (N, k)
    rows = []
    for n in range(N):
        sel = p[n, idx[n]]
        g = sel / sel.sum()
        acc = torch.zeros(x.shape[1])
        for j in range(k):
            e = idx[n, j]
            acc = acc + g[j] * (w_up[e] @ torch.nn.functional.gelu(w_down[e] @ x[n]))
        rows.append(acc)
    y = torch.stack(rows)
    f = torch.bincount(idx.flatten(), minlength=E).double() / (N * k)
    aux = weight * E * (f * p.mean(0).double()).sum()
    ((y * t["w_out"]).sum() + aux).backward()

    checks = {
        "indices": (idx, t["indices"]),
        "y": (y.detach(), t["y"]),
        "aux_loss": (aux.detach().float(), t["aux_loss"]),
        "x_grad": (x.grad, t["x_grad"]),
        "grad.gate": (gate.grad, t["grad.gate"]),
        "grad.w_down": (w_down.grad, t["grad.w_down"]),
        "grad.w_up": (w_up.grad, t["grad.w_up"]),
    }
    return 0 if compare(checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
