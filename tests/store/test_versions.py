"""Version allocation: one counter per named object, bumped inside the caller's transaction.

Each test runs on SQLite and PostgreSQL (``ops_workspace`` in ``conftest.py``)."""

from __future__ import annotations

import threading

from micromarketing.store.context import StoreContext
from micromarketing.store.versions import latest_version, next_version
from micromarketing.workspace import Workspace


def _context(ws: Workspace) -> StoreContext:
    return ws.context


def test_versions_count_per_kind_and_name(ops_workspace):
    ctx = _context(ops_workspace)
    with ctx.ops.session() as s:
        assert latest_version(s, "template", "a") is None
        assert [next_version(s, "template", "a") for _ in range(3)] == [1, 2, 3]
        assert next_version(s, "template", "b") == 1
        assert next_version(s, "clv") == 1
    with ctx.ops.session() as s:
        assert latest_version(s, "template", "a") == 3


def test_a_rolled_back_allocation_is_not_used(ops_workspace):
    ctx = _context(ops_workspace)
    try:
        with ctx.ops.session() as s:
            next_version(s, "segment", "x")
            raise RuntimeError("store failed")
    except RuntimeError:
        pass
    with ctx.ops.session() as s:
        assert next_version(s, "segment", "x") == 1


def test_two_threads_never_get_the_same_version(ops_workspace):
    ctx = _context(ops_workspace)
    got: dict[str, list[int]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def allocate(who: str) -> None:
        start.wait()
        for _ in range(50):
            with ctx.ops.session() as s:
                got[who].append(next_version(s, "model", "recommend"))

    threads = [threading.Thread(target=allocate, args=(who,)) for who in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    allocated = got["a"] + got["b"]
    assert sorted(allocated) == list(range(1, 101))


def test_a_workspace_from_before_the_counters_continues_after_its_stored_versions(ops_workspace):
    from datetime import date

    from sqlalchemy import delete

    from micromarketing.store.models import ModelVersion, Segment, SegmentVersion, Template, VersionCounter

    ws = ops_workspace
    with ws.ops.session() as s:  # what an older version wrote: stored versions, no counters
        s.add_all(
            [
                ModelVersion(kind="clv", version=4, as_of=date(2026, 1, 1)),
                Template(name="winback", version=2, parts={}),
            ]
        )
        segment = Segment(name="vip")
        s.add(segment)
        s.flush()
        s.add(SegmentVersion(segment_id=segment.id, version=3))
        s.execute(delete(VersionCounter))
    ws.close()
    ctx = Workspace.open(ws.root).context
    with ctx.ops.session() as s:
        assert next_version(s, "clv") == 5
        assert next_version(s, "template", "winback") == 3
        assert next_version(s, "segment", "vip") == 4
        assert next_version(s, "template", "other") == 1
    ctx.ops.create_all()  # idempotent: never lowers a counter
    with ctx.ops.session() as s:
        assert latest_version(s, "clv") == 5
