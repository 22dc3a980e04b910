"""The consent ledger: appended by ingest and ``record_consent``, derived by "latest record wins"."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micromarketing.errors import InvalidInputError, PolicyError
from micromarketing.privacy.consent import consent_in_force, current_consent, statuses_in_force
from micromarketing.segment_of_one import _fast_view, _portable_view
from micromarketing.store.schema import CONSENT_CHANNELS, CONSENT_STATUSES

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_ingest_keeps_statuses_and_fills_the_purpose(workspace, tmp_path):
    path = tmp_path / "consent.csv"
    path.write_text(
        "customer_id,channel,status,recorded_at,source\n"
        "C1,email,opt_in,2026-01-01T00:00:00Z,signup\n"
        "C1,email,opt_out,2026-02-01T00:00:00Z,unsubscribe link\n"
        "C1,sms,opt_in,2026-01-01T00:00:00Z,signup\n"
        "C2,email,maybe,2026-01-01T00:00:00Z,signup\n"
    )
    result = workspace.ingest("consent", path)
    assert result.accepted == 3 and result.rejected == 1  # "maybe" is not a status
    history = workspace.privacy.consent_history("C1")
    assert [(r.channel, r.status, r.purpose) for r in history] == [
        ("email", "opt_in", "marketing"), ("sms", "opt_in", "marketing"), ("email", "opt_out", "marketing")]
    state = {(r.channel, r.purpose): r.status for r in workspace.privacy.consent("C1")}
    assert state == {("email", "marketing"): "opt_out", ("sms", "marketing"): "opt_in"}


def test_ingest_accepts_an_end_and_quarantines_a_bad_one_naming_row_and_field(workspace, tmp_path):
    """``valid_until`` is optional; an end may lie years ahead (past ``max_future``), and one that
    does not parse or is not after ``recorded_at`` is quarantined naming the row and the field."""
    path = tmp_path / "consent.csv"
    path.write_text(
        "customer_id,channel,status,recorded_at,source,valid_until\n"
        "C1,email,opt_out,2026-01-01T00:00:00Z,partner,2030-06-01T00:00:00Z\n"
        "C1,sms,opt_in,2026-01-01T00:00:00Z,signup,\n"
        "C2,email,opt_out,2026-01-01T00:00:00Z,partner,soon\n"
        "C3,email,opt_out,2026-01-02T00:00:00Z,partner,2026-01-01T00:00:00Z\n"
        "C4,email,opt_out,2026-01-02T00:00:00Z,partner,2026-01-02T00:00:00+00:00\n"
    )
    result = workspace.ingest("consent", path)
    assert (result.accepted, result.rejected) == (2, 3)
    with result.quarantine_path.open(newline="", encoding="utf-8") as fh:
        quarantined = [(r["file"], r["row"], r["field"], r["reason"]) for r in csv.DictReader(fh)]
    assert quarantined == [
        (str(path), "3", "valid_until", "not an ISO 8601 timestamp"),
        (str(path), "4", "valid_until", "not later than recorded_at"),
        (str(path), "5", "valid_until", "not later than recorded_at"),
    ]
    ends = {r.channel: r.valid_until for r in workspace.privacy.consent_history("C1")}
    assert ends == {"email": datetime(2030, 6, 1, tzinfo=UTC), "sms": None}
    after = datetime(2030, 6, 1, tzinfo=UTC)
    assert {r.channel for r in workspace.privacy.consent("C1", at=after)} == {"sms"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cell=st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=30),
    st.datetimes(min_value=datetime(1800, 1, 1), max_value=datetime(9999, 1, 1),
                 timezones=st.just(UTC)).map(lambda d: d.isoformat()),
))
def test_any_valid_until_cell_is_stored_after_the_record_or_quarantined(workspace, tmp_path_factory, cell):
    """Whatever the ``valid_until`` cell holds: the row is stored with no end (empty cell) or an
    end after ``recorded_at``, or quarantined naming ``valid_until``; never an error."""
    path = tmp_path_factory.mktemp("consent") / "consent.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["customer_id", "channel", "status", "recorded_at", "valid_until"])
        writer.writerow(["C1", "email", "opt_out", "2026-01-01T00:00:00Z", cell])
    workspace.warehouse.raw_sql("DELETE FROM consent")
    result = workspace.ingest("consent", path)
    assert result.accepted + result.rejected == 1
    if result.accepted:
        (record,) = workspace.privacy.consent_history("C1")
        if record.valid_until is None:
            assert not cell.strip()  # only a blank cell means "no end"
        else:
            assert record.valid_until > record.recorded_at
    else:
        with result.quarantine_path.open(newline="", encoding="utf-8") as fh:
            assert [r["field"] for r in csv.DictReader(fh)] == ["valid_until"]


def test_record_consent_appends_per_purpose_and_is_audited(ops_workspace):
    ws = ops_workspace
    privacy = ws.privacy
    privacy.record_consent("C1", "email", "opt_in", at=T0, source="signup")
    privacy.record_consent("C1", "email", "opt_out", purpose="newsletter", at=T0 + timedelta(days=1),
                           source="preference centre", actor="api:prefs")
    privacy.record_consent("C1", "email", "opt_out", at=T0 + timedelta(days=2), source="preference centre")
    assert len(privacy.consent_history("C1")) == 3
    state = {r.purpose: (r.status, r.source) for r in privacy.consent("C1")}
    centre = "preference centre"
    assert state == {"marketing": ("opt_out", centre), "newsletter": ("opt_out", centre)}
    log = privacy.audit_log(action="consent.record")
    assert [e.actor for e in log] == ["cli", "api:prefs", "cli"]
    assert log[1].details == {"channel": "email", "purpose": "newsletter", "status": "opt_out",
                              "source": "preference centre"}


def test_an_erased_person_gets_no_new_consent(workspace, tmp_path):
    workspace.privacy.record_consent("C9", "email", "opt_in", at=T0)
    workspace.privacy.forget("C9")
    with pytest.raises(PolicyError, match="erased"):
        workspace.privacy.record_consent("C9", "email", "opt_in")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(channel=st.one_of(st.sampled_from(CONSENT_CHANNELS), st.text(max_size=8)),
       status=st.one_of(st.sampled_from(CONSENT_STATUSES), st.text(max_size=8)),
       purpose=st.text(max_size=70))
def test_bad_input_is_refused_naming_the_field(workspace, channel, status, purpose):
    valid = channel in CONSENT_CHANNELS and status in CONSENT_STATUSES and 0 < len(purpose.strip()) <= 64
    if valid:
        return  # the valid path is covered above; here only refusals are generated cheaply
    with pytest.raises(InvalidInputError) as refused:
        workspace.privacy.record_consent("C1", channel, status, purpose=purpose)
    assert str(refused.value).split(":")[0] in {"channel", "status", "purpose"}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["C1", "C2"]), st.sampled_from(["email", "sms"]),
                          st.sampled_from(["marketing", "news"]), st.sampled_from(CONSENT_STATUSES),
                          st.integers(0, 10_000)),
                min_size=1, max_size=25, unique_by=lambda r: (r[0], r[1], r[2], r[4])))
def test_the_latest_record_wins_like_a_plain_python_fold(workspace, tmp_path_factory, records):
    _replace_ledger(workspace, tmp_path_factory, records)
    expected: dict[tuple[str, str, str], tuple[int, str]] = {}
    for customer, channel, purpose, status, minute in records:
        key = (customer, channel, purpose)
        if key not in expected or minute > expected[key][0]:
            expected[key] = (minute, status)
    got = current_consent(workspace.context).to_pyarrow().to_pylist()
    assert {(r["customer_id"], r["channel"], r["purpose"]): r["status"] for r in got} == {
        k: v[1] for k, v in expected.items()}


def test_a_consent_table_from_before_purposes_and_ends_gains_the_columns(tmp_path):
    from micromarketing.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    ws.warehouse.raw_sql("DROP TABLE consent")
    ws.warehouse.raw_sql(  # the table as the previous release created it
        "CREATE TABLE consent (customer_id VARCHAR, channel VARCHAR, status VARCHAR, "
        "recorded_at TIMESTAMP WITH TIME ZONE, source VARCHAR, "
        "PRIMARY KEY (customer_id, channel, recorded_at))")
    ws.warehouse.raw_sql(
        "INSERT INTO consent VALUES ('C1', 'email', 'opt_in', '2025-01-01 00:00:00+00', 'old')")
    ws.close()
    with Workspace.open(tmp_path / "ws") as ws:
        ws.privacy.record_consent("C1", "email", "opt_out", at=T0, valid_until=T0 + timedelta(days=7))
        assert [(r.status, r.purpose, r.valid_until) for r in ws.privacy.consent_history("C1")] == [
            ("opt_in", "marketing", None), ("opt_out", "marketing", T0 + timedelta(days=7))]
        assert [r.status for r in ws.privacy.consent("C1", at=T0 + timedelta(days=6))] == ["opt_out"]
        assert [r.status for r in ws.privacy.consent("C1", at=T0 + timedelta(days=7))] == ["opt_in"]
        with pytest.raises(InvalidInputError, match="^valid_until: .* is not later than recorded_at"):
            ws.privacy.record_consent("C1", "email", "opt_out", at=T0, valid_until=T0)


# A ledger record: customer, channel, purpose ("" = NULL, as ingested before purposes existed),
# status, minute after T0 it was recorded, and the minutes it lasts (None: no end).
_RECORDS = st.lists(
    st.tuples(st.sampled_from(["C1", "C2", "C3"]), st.sampled_from(["email", "sms"]),
              st.sampled_from(["marketing", "news", ""]), st.sampled_from(CONSENT_STATUSES),
              st.integers(0, 5), st.one_of(st.none(), st.integers(1, 6))),
    min_size=1, max_size=25,
)


def _fold(records, minute: int) -> dict[tuple[str, str, str], str]:
    """The rule in plain Python: of the records still valid at ``minute`` (no end, or an end
    after it), the latest per (customer, channel, purpose); on a tie in time opt_out wins."""
    best: dict[tuple[str, str, str], tuple[int, str]] = {}
    for customer, channel, purpose, status, at, lasts in records:
        if lasts is not None and at + lasts <= minute:
            continue
        key = (customer, channel, purpose or "marketing")
        best[key] = max(best.get(key, (at, status)), (at, status))  # "opt_out" > "opt_in"
    return {k: v[1] for k, v in best.items()}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=_RECORDS, minute=st.integers(0, 12))
def test_every_reader_of_the_consent_in_force_follows_one_rule(workspace, records, minute):
    """The DuckDB statements (delivery batches, the segment of one), the Ibis expression (plans,
    Spark) and a plain fold agree at any moment, on ledgers whose records end (on the moment
    itself too) and tie in time: the table is rebuilt without its key, as a mapped lakehouse table
    may hold two records of one key at the same time."""
    _replace_ledger_raw(workspace, records)
    at = T0 + timedelta(minutes=minute)
    expected = _fold(records, minute)
    ctx = workspace.context
    got = current_consent(ctx, at=at).to_pyarrow().to_pylist()
    assert {(r["customer_id"], r["channel"], r["purpose"]): r["status"] for r in got} == expected
    wanted = {(ch, c) for ch in ("email", "sms") for c in ("C1", "C2", "C3", "C9")}
    for purpose in ("marketing", "news"):
        mine = {(ch, c): s for (c, ch, p), s in expected.items() if p == purpose}
        assert statuses_in_force(ctx, wanted, purpose, at=at) == mine, purpose
        rows = consent_in_force(ctx, ["email", "sms"], purpose=purpose, at=at).to_pyarrow().to_pylist()
        assert {(r["channel"], r["customer_id"]): r["status"] for r in rows} == mine, purpose
    for customer in ("C1", "C2", "C3"):
        mine = {(p, ch): s for (c, ch, p), s in expected.items() if c == customer}
        for view in (_fast_view, _portable_view):
            shown = view(ctx, customer, 1, 100, at)
            assert shown.consent == {ch: s for (p, ch), s in mine.items() if p == "marketing"}, view
            assert shown.topics == ({"news": {ch: s for (p, ch), s in mine.items() if p == "news"}}
                                    if any(p == "news" for p, _ in mine) else {}), view


def _replace_ledger_raw(workspace, records) -> None:  # type: ignore[no-untyped-def]
    """The ledger holds exactly ``records`` (see _RECORDS), in a consent table without a key."""
    wh = workspace.warehouse
    if not wh.fetch("SELECT 1 FROM customers LIMIT 1"):
        wh.raw_sql("INSERT INTO customers (customer_id) VALUES ('C1'), ('C2'), ('C3')")
    wh.raw_sql("DROP TABLE consent")
    wh.raw_sql("CREATE TABLE consent (customer_id VARCHAR, channel VARCHAR, status VARCHAR, "
               "recorded_at TIMESTAMPTZ, source VARCHAR, purpose VARCHAR, valid_until TIMESTAMPTZ)")
    rows = [(c, ch, s, T0 + timedelta(minutes=at), "gen", p or None,
             None if lasts is None else T0 + timedelta(minutes=at + lasts))
            for c, ch, p, s, at, lasts in records]
    wh.con.con.executemany("INSERT INTO consent VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    wh.changed()


def _replace_ledger(workspace, tmp_path_factory, records) -> None:  # type: ignore[no-untyped-def]
    """The ledger holds exactly ``records`` (customer, channel, purpose, status, minute after T0)."""
    path = tmp_path_factory.mktemp("consent") / "consent.csv"
    lines = ["customer_id,channel,status,recorded_at,source,purpose"]
    for customer, channel, purpose, status, minute in records:
        at = (T0 + timedelta(minutes=minute)).isoformat()
        lines.append(f"{customer},{channel},{status},{at},gen,{purpose}")
    path.write_text("\n".join(lines) + "\n")
    workspace.warehouse.raw_sql("DELETE FROM consent")
    assert workspace.ingest("consent", path).rejected == 0
