"""The segment-of-one view's DuckDB fast path gives what the portable Ibis path gives."""

from __future__ import annotations

import json
import re

import pytest

from micromarketing import Workspace
from micromarketing.errors import NotFoundError
from micromarketing.segment_of_one import _fast_view, _portable_view

MIDNIGHT = re.compile(r"^(\d{4}-\d{2}-\d{2})T00:00:00$")


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
