"""The seeds' three claims, and the gap and recycling follow-ups, as one resumable experiment
(`some experiment claims [--part claims|gap|recycling|all]`, docs/claims.md):
`python -m some_tools.claims --help`.

One module per concern: plan (the runs of each part and scale), experiment (the tasks, the domain-B
corpus, the command line), runner (child processes, resume, stop signals), stats (the pure numbers
and verdict wording), results (the finished runs and eval outputs read back), report, report_gap,
report_recycling and plots (OUT/report.md, report-gap.md, report-recycling.md and their figures).
"""
