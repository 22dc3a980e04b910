"""Guards: minimum size, overlap, measurement power, protected attributes and fairness."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from micromarketing.config import load_settings
from micromarketing.errors import PolicyError
from micromarketing.segments import Segments, guards
from micromarketing.store.models import AuditEvent
from micromarketing.workspace import Workspace


def test_min_size_warns_and_campaigns_refuse_unless_forced(ws):
    seg = Segments(ws)
    result = seg.create("lyon", "city = 'Lyon'")
    assert any("has 2 members, fewer than the minimum practical size 50" in w for w in result.warnings)
    with pytest.raises(PolicyError, match="pass force to target it anyway"):
        seg.enforce_min_size("lyon")
    assert seg.enforce_min_size("lyon", force=True) == 2
    assert guards.min_size_warning("big", 50, 50) is None


def test_min_size_is_configurable(ws, monkeypatch):
    monkeypatch.setenv("MICROMARKETING_SEGMENTS__MIN_SIZE", "2")
    reopened = Workspace.open(ws.root)
    try:
        seg = Segments(reopened)
        assert seg.min_size == 2
        assert not [w for w in seg.create("lyon", "city = 'Lyon'").warnings if "minimum practical" in w]
        assert seg.enforce_min_size("lyon") == 2
    finally:
        reopened.close()


def test_heavy_overlap_warning():
    shared = {"paris": (10, 9), "lyon": (100, 5), "tiny": (0, 0)}
    warnings = guards.overlap_warnings("runners", 12, shared)
    assert len(warnings) == 1 and "'paris': 9 shared members (90% of the smaller segment)" in warnings[0]


def test_minimum_detectable_lift_grows_with_the_number_of_segments():
    # 100k customers, 10% control, 2% baseline, α=0.05, power 0.8:
    # (1.95996 + 0.84162) * sqrt(0.02*0.98*(1/90000 + 1/10000)) / 0.02 ≈ 0.2067
    one = guards.minimum_detectable_lift(100_000)
    assert one == pytest.approx(0.2067, abs=1e-3)
    assert guards.minimum_detectable_lift(100_000, n_tests=20) > one * 1.2
    assert math.isinf(guards.minimum_detectable_lift(5))


def test_power_warning_counts_active_segments():
    assert guards.power_warnings({"a": 200_000, "b": 150_000}) == []
    many = {f"s{i}": 20_000 for i in range(12)}
    warnings = guards.power_warnings(many)
    assert len(warnings) == 1 and "12 of 12 active segments are too small" in warnings[0]
    assert "α=0.05/12" in warnings[0]


def test_protected_attributes_are_refused_without_a_reason(ws):
    seg = Segments(ws)
    with pytest.raises(
        PolicyError, match="line 1, col 20: segment 'w' uses protected attribute\\(s\\) 'gender'"
    ):
        seg.create("w", "frequency >= 1 and gender = 'F'")
    with pytest.raises(PolicyError, match="needs a --reason"):
        seg.create("w", "gender = 'F'", allow_sensitive=True, reason="  ")
    assert seg.list() == []


def test_allowed_sensitive_segment_is_audited(ws):
    seg = Segments(ws)
    result = seg.create(
        "w", "gender = 'F'", allow_sensitive=True, reason="product recall for a women's model"
    )
    assert result.size == 6
    details = seg.get("w").details
    assert details["sensitive_fields"] == ["gender"] and details["reason"].startswith("product recall")
    with ws.ops.session() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "segment.sensitive")).all()
        assert [(e.subject, e.details["fields"]) for e in events] == [("w", ["gender"])]


def test_sensitivity_is_inherited_through_in_segment(ws):
    seg = Segments(ws)
    seg.create("w", "gender = 'F'", allow_sensitive=True, reason="recall")
    with pytest.raises(PolicyError, match="protected attribute\\(s\\) 'gender'"):
        seg.create("w_paris", "in_segment('w') and city = 'Paris'")


def test_workspace_marked_fields_are_sensitive(ws, monkeypatch):
    frame = ws.table("customers").to_pandas()
    frame["health_status"] = ["ok"] * len(frame)
    frame["loyalty_code"] = ["x"] * len(frame)
    ws.warehouse.create_from("customers", frame)
    seg = Segments(ws)
    with pytest.raises(PolicyError, match="'health_status'"):
        seg.create("h", "health_status = 'ok'")
    assert seg.create("l", "loyalty_code = 'x'").size == 11
    (ws.root / "micromarketing.toml").write_text(
        (ws.root / "micromarketing.toml")
        .read_text()
        .replace("sensitive_fields = [", 'sensitive_fields = [\n    "loyalty_code",')
    )
    assert "loyalty_code" in load_settings(ws.root).segments.sensitive_fields
    reopened = Workspace.open(ws.root)
    try:
        with pytest.raises(PolicyError, match="'loyalty_code'"):
            Segments(reopened).create("l2", "loyalty_code = 'x'")
    finally:
        reopened.close()


def test_fairness_report_hand_checked(ws):
    seg = Segments(ws)
    seg.create("runners", "interests contains 'running'")  # C01, C03, C05, C10: all F
    report = seg.fairness("runners")
    assert (report.size, report.base_size) == (4, 11)
    [gender] = report.fields
    groups = {g.value: g for g in gender.groups}
    assert (groups["F"].base_count, groups["F"].segment_count) == (6, 4)
    assert groups["F"].selection_rate == pytest.approx(4 / 6)
    assert groups["M"].selection_rate == 0 and groups["M"].impact_ratio == 0
    assert groups["(unknown)"].impact_ratio is None
    assert gender.disparate_impact == 0 and gender.flagged and report.flagged == ["gender"]
    assert "religion" in report.missing

    seg.create("paris_lyon", "city in ('Paris', 'Lyon')")  # F: C01, C03 of 6; M: C02, C04 of 4
    g = seg.fairness("paris_lyon").fields[0]
    assert g.disparate_impact == pytest.approx((2 / 6) / (2 / 4))
    assert g.flagged  # 0.667 < 0.8
