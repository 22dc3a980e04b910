"""Guards against over-segmentation and discriminatory targeting.

* Minimum practical size: :func:`min_size_warning` (creation and discovery warn) and
  :func:`enforce_min_size` (campaigns refuse a small segment unless forced).
* Heavy overlap between segments: :func:`overlap_warnings`.
* Too many active segments for per-segment measurement: :func:`power_warnings` computes the
  minimum detectable lift of a treatment/control test in each segment at a Bonferroni-corrected
  level and warns when it is larger than a useful effect.
* Protected attributes: :func:`sensitive_fields` finds them in a compiled rule,
  :func:`check_sensitive` refuses them unless explicitly allowed with a reason, and
  :func:`fairness_report` compares a segment's composition on sensitive fields with the base
  (selection rate per group and the disparate-impact ratio, flagged below 0.8 — the
  "four-fifths rule").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import ibis
import ibis.expr.types as ir
from scipy.stats import norm

from micromarketing.errors import PolicyError
from micromarketing.segments.dsl import Pos

HEAVY_OVERLAP = 0.8  # share of the smaller segment also in the other
DISPARATE_IMPACT_THRESHOLD = 0.8
# Defaults for the power check: a 10 % control group, a 2 % baseline response rate, and a lift
# worth detecting of at most 50 % relative.
POWER_DEFAULTS = {
    "baseline_rate": 0.02,
    "control_share": 0.1,
    "alpha": 0.05,
    "power": 0.8,
    "max_relative_lift": 0.5,
}


# -- size ------------------------------------------------------------------------------------
def min_size_warning(name: str, size: int, min_size: int) -> str | None:
    """The warning for a segment smaller than ``min_size`` (settings.segments.min_size), else None.

    Discovery calls this for every cluster it proposes; creation calls it after materialising.
    """
    if size < min_size:
        return (
            f"segment {name!r} has {size} member{'s' if size != 1 else ''}, fewer than the minimum "
            f"practical size {min_size}: campaigns will refuse it unless forced"
        )
    return None


def enforce_min_size(name: str, size: int, min_size: int, *, force: bool = False) -> str | None:
    """Raise :class:`PolicyError` when a campaign targets a segment below ``min_size``.

    With ``force=True`` it returns the warning instead of raising (the caller should audit it).
    """
    warning = min_size_warning(name, size, min_size)
    if warning and not force:
        raise PolicyError(f"{warning} (pass force to target it anyway)")
    return warning


# -- overlap and power -------------------------------------------------------------------------
def overlap_warnings(
    name: str, size: int, shared: dict[str, tuple[int, int]], threshold: float = HEAVY_OVERLAP
) -> list[str]:
    """Warnings for segments sharing at least ``threshold`` of the smaller one's members.

    ``shared`` maps another segment's name to (its size, members shared with ``name``).
    """
    out = []
    for other, (other_size, common) in sorted(shared.items()):
        smaller = min(size, other_size)
        if other == name or smaller == 0:
            continue
        share = common / smaller
        if share >= threshold:
            out.append(
                f"segment {name!r} overlaps heavily with {other!r}: {common} shared members "
                f"({share:.0%} of the smaller segment)"
            )
    return out


def minimum_detectable_lift(
    size: int,
    *,
    n_tests: int = 1,
    baseline_rate: float = 0.02,
    control_share: float = 0.1,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """Smallest relative lift a two-sided test on one segment of ``size`` can detect.

    Treatment and control are ``size * (1 - control_share)`` and ``size * control_share``; the
    level is Bonferroni-corrected for ``n_tests`` simultaneous segment tests.
    """
    n_c = size * control_share
    n_t = size - n_c
    if n_c < 1 or n_t < 1:
        return math.inf
    z = norm.ppf(1 - alpha / (2 * max(n_tests, 1))) + norm.ppf(power)
    se = math.sqrt(baseline_rate * (1 - baseline_rate) * (1 / n_t + 1 / n_c))
    return float(z * se / baseline_rate)


def power_warnings(sizes: dict[str, int], **assumptions: float) -> list[str]:
    """Warn when, with this many active segments, per-segment lift tests are underpowered."""
    opts = {**POWER_DEFAULTS, **assumptions}
    k = len(sizes)
    if k == 0:
        return []
    weak = {
        name: minimum_detectable_lift(
            size,
            n_tests=k,
            baseline_rate=opts["baseline_rate"],
            control_share=opts["control_share"],
            alpha=opts["alpha"],
            power=opts["power"],
        )
        for name, size in sizes.items()
    }
    weak = {n: v for n, v in weak.items() if v > opts["max_relative_lift"]}
    if not weak:
        return []
    worst = sorted(weak.items(), key=lambda kv: -kv[1])[:3]
    listed = ", ".join(f"{n!r} (≥{'∞' if math.isinf(v) else f'{v:.0%}'})" for n, v in worst)
    return [
        f"{len(weak)} of {k} active segments are too small to measure on their own: with a "
        f"{opts['control_share']:.0%} control group, a {opts['baseline_rate']:.0%} baseline rate and "
        f"α={opts['alpha']}/{k}, they only detect lifts of {listed}; merge segments or measure them pooled"
    ]


# -- sensitive attributes ------------------------------------------------------------------------
def is_sensitive(field_name: str, sensitive: list[str]) -> bool:
    """Whether ``field_name`` names a protected attribute (``gender``, ``health_status``, …)."""
    name = field_name.lower()
    for s in sensitive:
        s = s.lower()
        if name == s or name.startswith(s + "_") or name.endswith("_" + s) or f"_{s}_" in name:
            return True
    return False


def sensitive_fields(fields: dict[str, Pos], sensitive: list[str]) -> dict[str, Pos]:
    """The protected attributes among a rule's fields, with where each first appears."""
    return {f: pos for f, pos in fields.items() if is_sensitive(f, sensitive)}


def check_sensitive(name: str, found: dict[str, Pos], *, allow: bool, reason: str | None) -> None:
    """Refuse a rule on protected attributes unless allowed with a non-empty reason."""
    if not found:
        return
    first = min(found.values(), key=lambda p: p.offset)
    names = ", ".join(repr(f) for f in found)
    if not allow:
        raise PolicyError(
            f"line {first.line}, col {first.col}: segment {name!r} uses protected attribute(s) {names}; "
            'targeting on them needs --allow-sensitive --reason "…" (recorded in the audit log)'
        )
    if not reason or not reason.strip():
        raise PolicyError(
            f"segment {name!r} uses protected attribute(s) {names}: --allow-sensitive "
            'needs a --reason "…" for the audit log'
        )


# -- fairness ------------------------------------------------------------------------------------
@dataclass
class GroupShare:
    """One group of a sensitive field: its size in the base and in the segment."""

    value: str
    base_count: int
    segment_count: int
    base_share: float
    segment_share: float
    selection_rate: float
    impact_ratio: float | None  # selection rate / the highest group's selection rate


@dataclass
class FieldFairness:
    """Composition of a segment on one sensitive field and its disparate-impact ratio."""

    field: str
    groups: list[GroupShare]
    disparate_impact: float | None  # lowest / highest selection rate over known groups
    flagged: bool


@dataclass
class FairnessReport:
    """The segment's composition on every sensitive field present in the base."""

    segment: str
    size: int
    base_size: int
    fields: list[FieldFairness] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # sensitive fields the warehouse does not hold

    @property
    def flagged(self) -> list[str]:
        return [f.field for f in self.fields if f.flagged]


UNKNOWN = "(unknown)"


def fairness_report(
    segment: str,
    base: ir.Table,
    members: ir.Table,
    sensitive: list[str],
    threshold: float = DISPARATE_IMPACT_THRESHOLD,
    min_group: int = 1,
) -> FairnessReport:
    """Compare the segment's composition with the base on each sensitive field.

    For each group (missing values form their own "(unknown)" group, left out of the ratio),
    the selection rate is members / base; the disparate-impact ratio is the lowest rate over the
    highest among groups with at least ``min_group`` customers in the base, flagged below
    ``threshold`` (0.8).
    """
    present = [c for c in base.columns if is_sensitive(c, sensitive)]
    missing = [s for s in sensitive if not any(is_sensitive(c, [s]) for c in base.columns)]
    flag = base.customer_id.isin(members.customer_id)
    report = FairnessReport(segment, 0, 0, missing=missing)
    for col in present:
        grouped = (
            base.mutate(_g=base[col].cast("string").fill_null(UNKNOWN), _m=flag.cast("int64"))
            .group_by("_g")
            .aggregate(base_count=ibis._.count(), segment_count=ibis._._m.sum())
            .order_by("_g")
            .to_pyarrow()
            .to_pylist()
        )
        base_total = sum(r["base_count"] for r in grouped)
        seg_total = sum(int(r["segment_count"] or 0) for r in grouped)
        report.size, report.base_size = seg_total, base_total
        rates = {
            r["_g"]: (int(r["segment_count"] or 0) / r["base_count"]) for r in grouped if r["base_count"]
        }
        known = {
            g: r
            for g, r in rates.items()
            if g != UNKNOWN and next(x for x in grouped if x["_g"] == g)["base_count"] >= min_group
        }
        top = max(known.values(), default=0.0)
        groups = [
            GroupShare(
                value=r["_g"],
                base_count=r["base_count"],
                segment_count=int(r["segment_count"] or 0),
                base_share=r["base_count"] / base_total if base_total else 0.0,
                segment_share=int(r["segment_count"] or 0) / seg_total if seg_total else 0.0,
                selection_rate=rates.get(r["_g"], 0.0),
                impact_ratio=(rates[r["_g"]] / top) if top and r["_g"] in known else None,
            )
            for r in grouped
        ]
        di = (min(known.values()) / top) if top and len(known) >= 2 else None
        report.fields.append(FieldFairness(col, groups, di, di is not None and di < threshold))
    return report

