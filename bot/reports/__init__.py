"""History, reports and digests: what happened to a company's entries, day by day.

- history.py: what each audit adds to the daily roll-up (and which entries it flagged);
- report.py: one company's period as a summary, a PNG chart and a CSV of the flagged entries;
- digest.py: the weekly portfolio of a workspace (one line per company and one chart);
- chart.py: the matplotlib drawings (Agg: no display needed).
"""
