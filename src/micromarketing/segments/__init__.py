"""Segments: the rule language (dsl, rules), segment definitions, discovery and the guards.

Reached as ``ws.segments`` (:class:`~micromarketing.segments.service.SegmentService`)::

    seg = ws.segments
    seg.create("lapsed_runners", "bought(category='running') and days_since(last_order_at) > 90")
    seg.preview(rule="city in ('Lyon', 'Paris') and frequency >= 3")
    seg.sql("lapsed_runners", dialect="spark")

Discovery (``discover.py``) stores all its clusters in one write with
:meth:`Segments.save_discovered_set` and checks sizes with :func:`min_size_warning`.
"""

from micromarketing.segments.definitions import (
    MEMBERS_TABLE,
    Materialisation,
    Overlap,
    Preview,
    SegmentInfo,
    Segments,
)
from micromarketing.segments.dsl import parse
from micromarketing.segments.guards import (
    FairnessReport,
    enforce_min_size,
    fairness_report,
    min_size_warning,
    minimum_detectable_lift,
    overlap_warnings,
    power_warnings,
)
from micromarketing.segments.rules import Catalog, CompiledRule, compile_rule

__all__ = [
    "MEMBERS_TABLE",
    "Catalog",
    "CompiledRule",
    "FairnessReport",
    "Materialisation",
    "Overlap",
    "Preview",
    "SegmentInfo",
    "Segments",
    "compile_rule",
    "enforce_min_size",
    "fairness_report",
    "min_size_warning",
    "minimum_detectable_lift",
    "overlap_warnings",
    "parse",
    "power_warnings",
]
