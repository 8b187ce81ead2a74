"""The seeds' three claims as one resumable experiment (`some experiment claims`, docs/claims.md):
`python -m some_tools.claims --help`.

One module per concern: plan (the runs of each scale), experiment (the tasks, the domain-B corpus,
the command line), runner (child processes, resume, stop signals), stats (the pure numbers and
verdict wording), results (the finished runs and eval outputs read back), report and plots
(OUT/report.md and its figures).
"""
