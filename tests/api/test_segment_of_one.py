"""The segment-of-one view's DuckDB fast path gives what the portable Ibis path gives."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from micromarketing import Workspace
from micromarketing.errors import NotFoundError
from micromarketing.segment_of_one import _fast_view, _portable_view

MIDNIGHT = re.compile(r"^(\d{4}-\d{2}-\d{2})T00:00:00Z?$")


def _json(view):
    """The view as JSON, a DATE read through pandas (naive midnight) written as the date it is."""

    def norm(value):
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        if isinstance(value, list):
            return [norm(v) for v in value]
        if isinstance(value, str) and (m := MIDNIGHT.match(value)):
            return m.group(1)
        return value

    return norm(json.loads(view.model_dump_json()))


def test_fast_and_portable_paths_agree(shared):
    with Workspace.open(shared.root) as ws:
        ws.segments.create("big", "monetary > 50")
        ids = ws.table("customers").order_by("customer_id").customer_id.execute().tolist()[::80]
        ids.append(shared.customer_id)
        for cid in ids:
            fast = _json(_fast_view(ws.context, cid, 10, 100))
            portable = _json(_portable_view(ws.context, cid, 10, 100))
            # ties of the same order time may come in either order: compare orders as sets
            for view in (fast, portable):
                view["recent_orders"] = sorted(view["recent_orders"], key=lambda o: o["order_id"])
            assert fast == portable, cid
        assert any(_json(_fast_view(ws.context, c, 10, 100))["segments"] for c in ids)


def test_unknown_customer_is_not_found_on_both_paths(shared):
    with Workspace.open(shared.root) as ws:
        for view in (_fast_view, _portable_view):
            with pytest.raises(NotFoundError, match="nobody"):
                view(ws.context, "nobody", 10, 100)


def test_the_latest_materialisation_of_the_current_version_counts(served):
    """A later write of an earlier date, a new version, and a version materialised before the
    latest date was recorded (older workspaces): the fast path still names what the scan does."""
    from datetime import date

    from sqlalchemy import select

    from micromarketing.store.models import Segment, SegmentVersion

    with Workspace.open(served.root) as ws:
        ws.segments.create("spenders", "monetary > 100", as_of=date(2026, 6, 1))
        ws.segments.materialise("spenders", as_of=date(2025, 6, 1))  # older date, written last
        ws.segments.create("rich", "monetary > 20", as_of=date(2026, 6, 1))
        ws.segments.create("rich", "monetary > 400", replace=True, as_of=date(2026, 6, 1))
        with ws.ops.session() as s:  # as a workspace made before latest_as_of was recorded
            loyal = s.scalar(select(SegmentVersion).join(Segment).where(Segment.name == "loyal"))
            loyal.details = {k: v for k, v in loyal.details.items() if k != "latest_as_of"}
        assert ws.segments.latest_materialisations(["spenders", "rich", "loyal", "nope"]) == {
            "spenders": (1, date(2026, 6, 1)),
            "rich": (2, date(2026, 6, 1)),
            "loyal": ws.segments.latest_materialisations(["loyal"])["loyal"],
        }
        ids = ws.table("customers").order_by("customer_id").customer_id.execute().tolist()[::40]
        seen = set()
        for cid in ids:
            fast = _fast_view(ws.context, cid, 10, 100).segments
            assert fast == _portable_view(ws.context, cid, 10, 100).segments, cid
            seen.update(fast)
        assert seen == {"loyal", "spenders", "rich"}
        _, loyal_as_of = ws.segments.latest_materialisations(["loyal"])["loyal"]
        with ws.ops.session() as s:  # looked up once, then recorded
            loyal = s.scalar(select(SegmentVersion).join(Segment).where(Segment.name == "loyal"))
            assert loyal.details["latest_as_of"] == loyal_as_of.isoformat()


def test_every_lookup_is_an_index_scan_after_rebuilds(served):
    """The customer_id indexes survive a profile rebuild and a new segment, and DuckDB uses them
    (the plan as run: plain EXPLAIN shows a sequential scan that execution turns into an index scan)."""
    from micromarketing.segment_of_one import _LEDGER, _MEMBERSHIPS, _ORDERS

    with Workspace.open(served.root) as ws:
        ws.profile()
        ws.segments.create("fresh", "frequency >= 1")
        plans = {
            "profiles": ("SELECT * FROM profiles WHERE customer_id = $1 LIMIT 1", [served.customer_id]),
            "orders": (_ORDERS, [served.customer_id, 10]),
            "consent": (_LEDGER, [served.customer_id, datetime.now(UTC)]),
            "memberships": (_MEMBERSHIPS, [served.customer_id]),
        }
        for label, (sql, params) in plans.items():
            plan = "\n".join(r["explain_value"] for r in ws.warehouse.fetch(f"EXPLAIN ANALYZE {sql}", params))
            assert "Index Scan" in plan and "Sequential Scan" not in plan, (label, plan)


def test_what_a_lookup_remembers_follows_the_servers_own_writes(served):
    """The table list and the latest materialisations are remembered between lookups (one
    process holds the warehouse), and every write through this workspace makes them fresh:
    a segment created, replaced by a version nobody matches, and deleted."""
    cid = served.customer_id
    with Workspace.open(served.root) as ws:
        assert "loyal" in ws.segment_of_one(cid).segments
        ws.segments.create("everyone", "frequency >= 0")
        assert {"loyal", "everyone"} <= set(ws.segment_of_one(cid).segments)
        ws.segments.create("everyone", "frequency < 0", replace=True)
        assert "everyone" not in ws.segment_of_one(cid).segments
        ws.segments.delete("loyal")
        assert "loyal" not in ws.segment_of_one(cid).segments
        ws.warehouse.raw_sql("DROP TABLE profiles")
        assert ws.segment_of_one(cid).profile is None
        ws.profile()
        assert ws.segment_of_one(cid).profile is not None


def test_topic_choices_are_apart_from_the_channel_consent_on_both_paths(served):
    """A topic's records (another purpose of the ledger) show under ``topics``: the channel's
    ``consent`` stays the marketing one on the fast and the portable path alike."""
    from datetime import UTC, datetime, timedelta

    cid = served.customer_id
    later = datetime.now(UTC) + timedelta(seconds=1)
    with Workspace.open(served.root) as ws:
        before = _fast_view(ws.context, cid, 10, 100).consent
        ws.privacy.record_consent(cid, "email", "opt_out", purpose="offers", source="preference centre")
        ws.privacy.record_consent(cid, "sms", "opt_in", purpose="offers", at=later)
        fast, portable = (_json(v(ws.context, cid, 10, 100)) for v in (_fast_view, _portable_view))
    assert fast == portable
    assert fast["consent"] == before and fast["topics"] == {"offers": {"email": "opt_out", "sms": "opt_in"}}
    assert [(e["purpose"], e["channel"]) for e in fast["consent_history"][:2]] == [
        ("offers", "sms"),
        ("offers", "email"),
    ]
