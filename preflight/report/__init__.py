"""What a person reads at the end of a run: the decision report and the plots in it.

:mod:`~preflight.report.decision` writes the verdict and its evidence as Markdown, a
self-contained HTML page (CSS inline, plots embedded) and the JSON of the call, from the tables
the decision stage keeps, with the charts :mod:`~preflight.report.decision_charts` picks for
it; :mod:`~preflight.report.plots` draws the per-slice metrics with
intervals, confusion, error types and frame grids as PNGs (matplotlib, headless). Nothing here
decides or computes a metric: it shows the core's tables.
"""
