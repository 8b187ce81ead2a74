"""The Python tools of SoME: `some report` and `some experiment claims` (docs/report.md, docs/claims.md).

Run from the source tree with tools/ on the module path, as the `some` launcher does:

    PYTHONPATH=tools python -m some_tools.report RUN [--out DIR] [--step N] [--method tsne|umap]
    PYTHONPATH=tools python -m some_tools.claims --some PATH [--out DIR] [--scale tiny|small] ...

Modules: `metrics` reads RUN/metrics.jsonl and `analytics_files` RUN/analytics/step_*.h5 (the one
reader of each, shared by every tool); `analytics` recomputes the trainer's routing metrics from
them; `plotting` and `formatting` hold what the two reports draw and print alike; `report` and
`claims` are the two tools.
"""
import os
from pathlib import Path

# Every matrix here is small (E up to a few hundred experts): more BLAS / OpenMP threads only
# oversubscribe a shared node. Set before any submodule imports numpy, which reads it once.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The source tree this package is part of (the folder above tools/): its configs, its git revision.
SOURCE_DIR = Path(__file__).resolve().parents[2]
