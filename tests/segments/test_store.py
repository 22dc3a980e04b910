"""Segment store: versions, materialised memberships per as-of date, discovered segments, previews."""

from __future__ import annotations

from datetime import date

import pyarrow.parquet as pq
import pytest
from mm_segments_population import AS_OF

from micromarketing.errors import ConflictError, DataError, NotFoundError, RuleError
from micromarketing.segments import MEMBERS_TABLE, Segments
from micromarketing.segments.definitions import DiscoveredMembers


def ids(table):
    return set(table.to_pyarrow().column("customer_id").to_pylist())


def test_create_materialises_membership_with_its_as_of(ws):
    seg = Segments(ws)
    result = seg.create("runners", "interests contains 'running'", description="Runners")
    assert (result.segment, result.version, result.as_of, result.size) == ("runners", 1, AS_OF, 4)
    t = ws.table(MEMBERS_TABLE)
    stored = t.filter(t.segment == "runners").to_pyarrow().to_pydict()
    assert set(stored["customer_id"]) == {"C01", "C03", "C05", "C10"}
    assert set(stored["as_of"]) == {AS_OF} and set(stored["version"]) == {1}
    info = seg.get("runners")
    assert (info.kind, info.description, info.size, info.as_of) == ("rule", "Runners", 4, AS_OF)


def test_versions_and_materialisations_per_as_of(ws):
    seg = Segments(ws)
    seg.create("recent", "bought(within_days=30)")
    assert ids(seg._materialised("recent", None)) == {"C01", "C03", "C09"}
    with pytest.raises(ConflictError, match="already exists; use --replace"):
        seg.create("recent", "bought(within_days=60)")
    result = seg.create("recent", "bought(within_days=60)", replace=True)
    assert result.version == 2 and result.size == 5  # + C02 (40 days) and C10 (60 days)
    # As of June 1 the window is [April 2, June 1): C02 (May 22, April 22) and C10 (May 2); C09's order
    # is on June 1 itself, so not yet.
    earlier = seg.materialise("recent", as_of=date(2024, 6, 1))
    assert (earlier.as_of, earlier.size) == (date(2024, 6, 1), 2)
    assert ids(seg._materialised("recent", date(2024, 6, 15))) == {"C02", "C10"}
    assert ids(seg._materialised("recent", None)) == {"C01", "C02", "C03", "C09", "C10"}
    assert [v["rule"] for v in seg.versions("recent")] == ["bought(within_days=30)", "bought(within_days=60)"]
    # re-materialising a date replaces its rows instead of adding duplicates
    seg.materialise("recent", as_of=AS_OF)
    t = ws.table(MEMBERS_TABLE)
    assert t.filter([t.segment == "recent", t.as_of == AS_OF]).count().execute() == 5


def test_in_segment_follows_the_referenced_rule_and_refuses_cycles(ws):
    seg = Segments(ws)
    seg.create("paris", "city = 'Paris'")
    seg.create("runners", "interests contains 'running'")
    assert seg.create("paris_runners", "in_segment('paris') and in_segment('runners')").size == 1
    assert seg.get("paris_runners").details["segments"] == ["paris", "runners"]
    with pytest.raises(RuleError, match="refers to itself"):
        seg.create("paris", "in_segment('paris_runners')", replace=True)


def test_discovered_segments_are_segments_too(ws):
    seg = Segments(ws)
    result = seg.save_discovered("cluster_3", ["C02", "C09", "C02"], as_of=AS_OF, details={"k": 5})
    assert result.size == 2 and any("fewer than the minimum practical size 50" in w for w in result.warnings)
    info = seg.get("cluster_3")
    assert (info.kind, info.rule, info.details["k"], info.size) == ("discovered", "", 5, 2)
    assert ids(seg.member_table("cluster_3")) == {"C02", "C09"}
    assert ids(seg.compile("in_segment('cluster_3') and city = 'Paris'").members()) == {"C02"}
    with pytest.raises(RuleError, match="it is materialised by the code that discovers it"):
        seg.materialise("cluster_3")


def test_export_members_csv_and_parquet(ws, tmp_path):
    seg = Segments(ws)
    seg.create("lyon", "city = 'Lyon'")
    assert seg.export_members("lyon", tmp_path / "lyon.csv") == 2
    assert (tmp_path / "lyon.csv").read_text().splitlines() == [
        '"customer_id","segment","as_of"',
        '"C03","lyon",2024-07-01',
        '"C04","lyon",2024-07-01',
    ]
    seg.export_members("lyon", tmp_path / "out" / "lyon.parquet")
    assert pq.read_table(tmp_path / "out" / "lyon.parquet").column("customer_id").to_pylist() == [
        "C03",
        "C04",
    ]
    with pytest.raises(DataError, match="use .csv or .parquet"):
        seg.export_members("lyon", tmp_path / "lyon.xlsx")
    with pytest.raises(NotFoundError, match="no segment named 'lyn'; did you mean 'lyon'"):
        seg.export_members("lyn", tmp_path / "x.csv")


def test_preview_figures_are_hand_checked(ws):
    p = Segments(ws).preview(rule="interests contains 'running'", sample=2)
    assert (p.size, p.base_size) == (4, 11)
    assert p.share_of_base == pytest.approx(4 / 11)
    # monetary: (1500 + 420 + 950 + 210) / 7010; clv: mean(900, 250, 120, 60)
    assert p.revenue_share == pytest.approx(3080 / 7010)
    assert p.average_clv == pytest.approx(332.5)
    assert [r["customer_id"] for r in p.sample] == ["C01", "C03"]
    assert "gender" not in p.sample[0] and "email" not in p.sample[0]
    assert p.differences and p.differences[0].score >= p.differences[-1].score
    assert any("fewer than the minimum" in w for w in p.warnings)


def test_overlap_matrix(ws):
    seg = Segments(ws)
    seg.create("paris", "city = 'Paris'")
    seg.create("runners", "interests contains 'running'")
    seg.create("young", "age < 30")  # C01, C04, C10
    o = seg.overlap()
    assert o.names == ["paris", "runners", "young"]
    assert o.sizes == {"paris": 3, "runners": 4, "young": 3}
    assert o.shared["paris"] == {"paris": 3, "runners": 1, "young": 1}
    assert o.shared["runners"]["young"] == 2 and o.shared["young"]["runners"] == 2
    assert not [w for w in o.warnings if "overlaps heavily" in w]


def test_sql_per_dialect_selects_customer_ids(ws):
    seg = Segments(ws)
    seg.create("lyon", "city = 'Lyon'")
    duck = seg.sql("lyon", dialect="duckdb")
    assert '"customers"' in duck and "'Lyon'" in duck and "warehouse" not in duck
    assert ws.warehouse.raw_sql(duck).fetchall() in ([("C03",), ("C04",)], [("C04",), ("C03",)])


def test_invalid_names(ws):
    with pytest.raises(DataError, match="invalid segment name"):
        Segments(ws).create("drop table;", "frequency > 1")


def test_retired_segment_is_not_active_and_old_members_do_not_stand_in(ws):
    seg = Segments(ws)
    seg.save_discovered("cluster_1", ["C01", "C02"], as_of=AS_OF)
    seg.create("lyon", "city = 'Lyon'")
    seg.save_discovered("cluster_1", [], as_of=AS_OF, replace=True)  # retired: v2 has no members
    assert seg.get("cluster_1").version == 2 and seg.get("cluster_1").size is None
    assert seg.overlap().names == ["lyon"]
    assert ids(seg.compile("in_segment('cluster_1') or city = 'Nice'").members()) == {"C10"}


def test_a_discovered_set_is_written_together_and_its_guards_judge_the_finished_set(ws):
    seg = Segments(ws)
    first = seg.save_discovered_set(
        [DiscoveredMembers("d_1", ["C01", "C02"]), DiscoveredMembers("d_2", ["C03", "C04"]),
         DiscoveredMembers("d_3", ["C05"])],
        as_of=AS_OF,
    )
    assert [(m.segment, m.version, m.size) for m in first] == [("d_1", 1, 2), ("d_2", 1, 2), ("d_3", 1, 1)]
    again = seg.save_discovered_set(
        [DiscoveredMembers("d_1", ["C01", "C02", "C06"], replace=True),
         DiscoveredMembers("d_2", ["C02", "C01"], replace=True),
         DiscoveredMembers("d_3", [], details={"retired": True}, replace=True)],
        as_of=AS_OF,
    )
    assert [(m.segment, m.version, m.size) for m in again] == [("d_1", 2, 3), ("d_2", 2, 2), ("d_3", 2, 0)]
    t = ws.table(MEMBERS_TABLE)
    stored = {(r["segment"], r["version"], r["customer_id"])
              for r in t.filter(t.as_of == AS_OF).to_pyarrow().to_pylist()}
    # d_3 emptied on that date (its version 1 row is gone too), the others replaced
    assert stored == {("d_1", 2, "C01"), ("d_1", 2, "C02"), ("d_1", 2, "C06"), ("d_2", 2, "C01"),
                      ("d_2", 2, "C02")}
    # d_1's guards saw d_2's new members (written in the same call, after d_1 in the list) and
    # every version counts the two active segments, the retired one included
    details = {i.name: i.details for i in seg.list()}
    assert any("'d_1' overlaps heavily with 'd_2'" in w for w in details["d_1"]["warnings"])
    assert any("'d_2' overlaps heavily with 'd_1'" in w for w in details["d_2"]["warnings"])
    for name, size in (("d_1", 3), ("d_2", 2), ("d_3", 0)):
        assert (details[name]["last_size"], details[name]["latest_as_of"]) == (size, AS_OF.isoformat())
        assert any(w.startswith("2 of 2 active segments") for w in details[name]["warnings"]), name
        assert details[name]["warnings"] == next(m for m in again if m.segment == name).warnings
    assert seg.get("d_3").size is None and seg.get("d_3").details["retired"] is True


def test_a_discovered_set_stores_all_its_versions_or_none(ws):
    seg = Segments(ws)
    seg.save_discovered("d_1", ["C01"], as_of=AS_OF)
    with pytest.raises(ConflictError, match="'d_1' already exists"):
        seg.save_discovered_set([DiscoveredMembers("d_0", ["C02"]), DiscoveredMembers("d_1", ["C03"])],
                                as_of=AS_OF)
    assert [i.name for i in seg.list()] == ["d_1"] and seg.get("d_1").version == 1
    with pytest.raises(DataError, match="repeat in one set: d_2"):
        seg.save_discovered_set([DiscoveredMembers("d_2", ["C02"]), DiscoveredMembers("d_2", ["C03"])],
                                as_of=AS_OF)
