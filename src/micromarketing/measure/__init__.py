"""Measurement: attribution, KPIs, statistics, budget allocation and HTML reports (report.py so far)."""
