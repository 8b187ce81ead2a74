#!/usr/bin/env python3
"""Independent PyTorch reference for one MoE-baseline layer step (docs/design.md §10).

Reads moe_reference_io.h5 written by test_reference_export (gate, experts, input, the C++
output, auxiliary loss and gradients), recomputes them here token by token (gelu experts), and
exits non-zero if any tensor differs by more than 1e-5.
"""
import sys

import h5py
import torch

TOL = 1e-5


def main(path):
    with h5py.File(path, "r") as f:
        t = {k: torch.tensor(f[k][()]) for k in f.keys()}
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
    failed = False
    for name, (ref, got) in checks.items():
        diff = (ref.double() - got.double()).abs().max().item()
        ok = diff <= TOL
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: max |reference - C++| = {diff:.2e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
