"""`some top`: a live terminal dashboard of one or more runs (docs/top.md).

    python -m some_tools.top RUN [RUN ...] [--interval S] [--once]

Follows RUN/metrics.jsonl and RUN/analytics/step_*.h5 as the trainer appends to them and only
ever reads them: it never signals or talks to the training process, so it works on a run
directory seen over ssh or a shared file system (a Slurm job's), and on a finished run.

Modules: `run` (what is known about one run: the metrics so far, its config, the analytics
files and the key drift between them), `render` (Rich renderables of a run and of the summary
of several), `app` (arguments, the Live display and the keys).
"""
