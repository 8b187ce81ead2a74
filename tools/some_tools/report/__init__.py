"""Routing-analytics report of a run directory (`some report`, docs/report.md, docs/design.md §9):
PNG plots and report.md.

    python -m some_tools.report RUN [--out DIR] [--step N] [--method tsne|umap|both]

Reads RUN/metrics.jsonl (required), RUN/analytics/step_XXXXXXXX.h5 (one per eval, routed layers
only), RUN/config.toml (or the config in the latest checkpoint's manifest). Writes to DIR
(default RUN/report/): report.md and the PNGs it embeds, and report.html (the same page,
self-contained, for a browser). Gini, entropy, dead experts and key
geometry are recomputed from the analytics file (some_tools.analytics) and checked against the
trainer's numbers in metrics.jsonl. Exit status: 0 on success, 1 for a missing or unreadable
input (the message names the file), 2 for bad arguments.

Routers (model.ffn): `some` layers have keys and Knowledge-Gravity usage in the analytics file.
The baselines have counts and co-activation only: for `moe` the rows of the learned gate W_g
(from a checkpoint, else RUN/model.h5) take the place of the keys; `hash` routing has no
learned vectors, so its experts are placed by their co-activation (classical MDS). `dense`
runs get the loss curves only.

One module per stage: load (the run's config, router and MoE gate; metrics.jsonl and the
analytics files through some_tools.metrics / some_tools.analytics_files), summary (per-layer
numbers and the cross-check), plots, markdown, html; make puts them together.
"""
