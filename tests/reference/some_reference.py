#!/usr/bin/env python3
"""Independent PyTorch reference for one SoME layer step (docs/design.md §1 and §3).

Reads reference_io.h5 written by test_reference_export (weights, inputs, hyper-parameters and
the C++ results), recomputes forward, backward and the Knowledge Gravity update here with
per-token loops, and exits non-zero if any tensor differs by more than 1e-5.
"""
import sys

import torch
from compare import compare, load


def main(path):
    t = load(path)
    hp = {k.split(".", 1)[1]: float(v) for k, v in t.items() if k.startswith("hparam.")}
    k = int(hp["top_k"])
    x = t["x"].clone().requires_grad_(True)
    wq = t["param.query.0.weight"].clone().requires_grad_(True)
    bq = t["param.query.0.bias"].clone().requires_grad_(True)
    keys, usage = t["keys_before"].clone(), t["usage_before"].clone()
    w_down, w_up = t["w_down"], t["w_up"]
    E, d = keys.shape

    # Forward: query, cosine scores, top-k, clamped softmax gates, gated sum of frozen experts.
    q = x @ wq.T + bq
    qn = q / q.norm(dim=1, keepdim=True)
    kn = keys / keys.norm(dim=1, keepdim=True)
    scores = qn @ kn.T
    idx = torch.topk(scores.detach(), k, dim=1).indices
    sel = scores.gather(1, idx)
    gates = torch.softmax(torch.clamp(sel / hp["temperature"], -hp["logit_clamp"], hp["logit_clamp"]), dim=1)
    rows = []
    for n in range(x.shape[0]):
        acc = torch.zeros(d)
        for j in range(k):
            e = idx[n, j]
            acc = acc + gates[n, j] * (w_up[e] @ torch.nn.functional.gelu(w_down[e] @ x[n]))
        rows.append(acc)
    y = torch.stack(rows)
    (y * t["w_out"]).sum().backward()

    # Knowledge Gravity from per-token sums, all forces on the old keys (Jacobi).
    qhat = qn.detach()
    n_sel = torch.zeros(E)
    S = torch.zeros(E, d)
    P = torch.zeros(E, d)
    c = torch.zeros(E)
    for n in range(x.shape[0]):
        chosen = idx[n].tolist()
        for i in chosen:
            n_sel[i] += 1
            S[i] += qhat[n]
            for j in chosen:
                if j != i:
                    P[i] += keys[j]
                    c[i] += 1
    share = E * n_sel / n_sel.sum()
    usage = hp["ema_decay"] * usage + (1 - hp["ema_decay"]) * share
    inertia = 1 / (1 + usage)
    new = keys.clone()
    for i in range(E):
        if n_sel[i] > 0:
            new[i] += hp["alpha"] * inertia[i] * (S[i] / n_sel[i] - keys[i])
        if c[i] > 0:
            new[i] += hp["beta"] * inertia[i] * (P[i] / c[i] - keys[i])
        others = (keys.sum(0) - keys[i]) / (E - 1)
        new[i] += hp["repulsion"] * (keys[i] - others)
    # Decay: usage at or below the percentile, so that experts tied at the bottom all decay, but
    # below the maximum, so that equal usages (nobody below anybody) decay nobody.
    threshold = torch.quantile(usage, hp["decay_percentile"] / 100)
    decayed = 0
    for i in range(E):
        if usage[i] <= threshold and usage[i] < usage.max():
            new[i] *= 1 - hp["delta"]
            decayed += 1
        norm = new[i].norm()
        if norm > hp["max_key_norm"]:
            new[i] *= hp["max_key_norm"] / norm

    checks = {
        "indices": (idx, t["indices"]),
        "y": (y.detach(), t["y"]),
        "x_grad": (x.grad, t["x_grad"]),
        "query.weight grad": (wq.grad, t["grad.query.0.weight"]),
        "query.bias grad": (bq.grad, t["grad.query.0.bias"]),
        "usage_after": (usage, t["usage_after"]),
        "keys_after": (new, t["keys_after"]),
    }
    failed = not compare(checks)
    clamped = ((sel.detach() / hp["temperature"]).abs() > hp["logit_clamp"]).sum().item()
    tied = int((usage == usage.min()).sum()) if decayed else 0
    print(f"({clamped} gate logits clamped, {int((n_sel > 0).sum())} of {E} experts used, "
          f"{decayed} keys decayed, {tied} tied at the lowest usage)")
    if k > 1 and clamped == 0:
        print("FAIL the example exercises no clamped logit")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    # One or more exported steps (test_reference_export writes reference_io.h5 and the decay-tie
    # case reference_io_ties.h5); fails if any differs.
    paths = sys.argv[1:] or ["reference_io.h5"]
    sys.exit(max(main(path) for path in paths))
