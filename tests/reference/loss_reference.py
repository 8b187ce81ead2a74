#!/usr/bin/env python3
"""Independent PyTorch reference for the LM head + cross-entropy (docs/design.md §2, "The loss").

Reads loss_reference_io.h5 written by test_reference_export (hidden, tied weight, targets, the
C++ blocked loss and the gradients of 3 x loss), recomputes the loss row by row in fp64 —
log-sum-exp of the row's logits minus its target's logit — and its gradients by autograd, and
exits non-zero if any tensor differs by more than 1e-5.
"""
import sys

import torch
from compare import compare, load


def main(path):
    t = load(path)
    hidden = t["hidden"].double().requires_grad_(True)
    weight = t["weight"].double().requires_grad_(True)
    targets = t["targets"].long()
    rows = []
    for n in range(hidden.shape[0]):
        logits = weight @ hidden[n]                                   # (V,)
        rows.append(torch.logsumexp(logits, 0) - logits[targets[n]])
    loss = torch.stack(rows).mean()
    (3 * loss).backward()
    checks = {
        "loss": (loss.detach(), t["loss"]),
        "grad.hidden": (hidden.grad, t["grad.hidden"]),
        "grad.weight": (weight.grad, t["grad.weight"]),
    }
    return 0 if compare(checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
