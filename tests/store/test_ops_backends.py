"""The operations store on SQLite and PostgreSQL: migrations, adoption of old stores, engines.

Every test runs on both backends (``ops_url`` in ``conftest.py``); the PostgreSQL half is marked
``postgres``.  The head revision must create exactly ``Base.metadata``: a model change without a
migration fails ``test_the_head_revision_is_exactly_the_models``.
"""

from __future__ import annotations

import multiprocessing
from datetime import UTC, date, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, create_engine, inspect, select, text

from micromarketing.config import load_settings
from micromarketing.store.models import ApiKey, AuditEvent, Base, ModelVersion, OutboxMessage
from micromarketing.store.ops import (
    OperationsStore,
    head_revision,
    redact_contact_points,
    schema_differences,
)
from micromarketing.workspace import Workspace


def test_the_head_revision_is_exactly_the_models(ops_url, tmp_path):
    store = OperationsStore(tmp_path, ops_url)
    store.create_all()
    assert store.current_revision() == head_revision()
    with store.engine.connect() as conn:
        assert schema_differences(conn) == []
        assert set(inspect(conn).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
    store.create_all()  # idempotent
    store.close()


def test_a_store_made_by_create_all_is_adopted_and_keeps_its_rows(ops_url, tmp_path):
    """A store from before migrations: no alembic_version, a table and a column missing."""
    engine = create_engine(ops_url)
    old = MetaData()
    for table in Base.metadata.sorted_tables:
        if table.name != "api_keys":  # added by a later release
            table.to_metadata(old)
    old.create_all(engine)
    with engine.begin() as conn:  # and suppressions.source came later too
        conn.execute(text("ALTER TABLE suppressions DROP COLUMN source"))
    with engine.begin() as conn:
        conn.execute(ModelVersion.__table__.insert().values(
            kind="clv", version=3, as_of=date(2026, 1, 1), params={}, created_at=datetime.now(UTC)))
    engine.dispose()

    store = OperationsStore(tmp_path, ops_url)
    store.create_all()
    assert store.current_revision() == head_revision()
    with store.engine.connect() as conn:
        assert schema_differences(conn) == []
    with store.session() as s:
        assert s.scalar(select(ModelVersion.version)) == 3
        s.add(ApiKey(prefix="mm_1", key_hash="h" * 64, role="viewer"))
    store.close()


def _upgrade_in_child(root: str, url: str, start, results) -> None:  # type: ignore[no-untyped-def]
    start.wait(timeout=60)
    try:
        store = OperationsStore(Path(root), url)
        store.create_all()
        results.put(store.current_revision())
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(repr(exc))


def _upgrade_in_two_processes_at_once(root: Path, url: str) -> list[str | None]:
    """What two processes upgrading ``url`` report: forked (the children inherit the imports) and
    released together by a barrier."""
    fork = multiprocessing.get_context("fork")
    start, results = fork.Barrier(2), fork.Queue()
    children = [fork.Process(target=_upgrade_in_child, args=(str(root), url, start, results))
                for _ in range(2)]
    for child in children:
        child.start()
    got = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=30)
    return got


def test_two_processes_upgrading_one_empty_store_at_once_both_succeed(ops_url, tmp_path):
    assert _upgrade_in_two_processes_at_once(tmp_path, ops_url) == [head_revision(), head_revision()]


def test_processes_opening_new_sqlite_stores_at_once_all_succeed(tmp_path):
    """The race of two processes switching one new file to WAL (28 of 100 rounds failed before
    the retry in ``_switch_to_wal``); ten rounds, each on a new file."""
    for round_ in range(10):
        url = f"sqlite:///{tmp_path}/ops-{round_}.sqlite"
        got = _upgrade_in_two_processes_at_once(tmp_path, url)
        assert got == [head_revision(), head_revision()], f"round {round_}"


def test_rows_round_trip_with_json_and_aware_timestamps(ops_url, tmp_path):
    store = OperationsStore(tmp_path, ops_url)
    store.create_all()
    sent = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    with store.session() as s:
        s.add(OutboxMessage(idempotency_key="k1", message_id="<m1@x>", customer_id="C1", channel="email",
                            fields={"first_name": "Zoë", "items": [1, 2]}, sent_at=sent))
        s.add(ApiKey(prefix="mm_abc", key_hash="f" * 64, role="admin", name="ops"))
    with store.session() as s:
        message = s.scalars(select(OutboxMessage)).one()
        assert message.fields == {"first_name": "Zoë", "items": [1, 2]}
        assert message.sent_at is not None
        assert message.sent_at.replace(tzinfo=message.sent_at.tzinfo or UTC) == sent
        assert s.scalars(select(ApiKey.role).where(ApiKey.prefix == "mm_abc")).one() == "admin"
    store.close()


def test_sqlite_overwrites_deleted_rows(tmp_path):
    store = OperationsStore(tmp_path, "sqlite:///ops.sqlite")
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA secure_delete")).scalar() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    store.close()


def test_a_workspace_on_postgresql_from_its_settings_file(ops_url, tmp_path, monkeypatch):
    """``[ops] url`` in micromarketing.toml (not only the variable) moves the store."""
    monkeypatch.delenv("MICROMARKETING_OPS__URL", raising=False)
    ws = Workspace.init(tmp_path / "ws")
    ws.close()
    toml = tmp_path / "ws" / "micromarketing.toml"
    toml.write_text(toml.read_text().replace('url = "sqlite:///ops.sqlite"', f'url = "{ops_url}"'))
    assert load_settings(tmp_path / "ws").ops.url == ops_url
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.ops.dialect == make_dialect(ops_url)
        ws.audit("test.action", "subject", {"n": 1})
        with ws.ops.session() as s:
            assert s.scalars(select(AuditEvent.action)).all() == ["test.action"]


def make_dialect(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


def test_the_audit_log_never_holds_emails_or_phone_numbers(ops_workspace):
    ops_workspace.audit(
        "customer.update", "ann@example.com",
        {"email": "Ann.Lee+promo@example.co.uk", "phone": "+33 6 12 34 56 78", "note": "call 0612345678",
         "as_of": "2026-01-31", "at": "2026-12-03T08:00:00+00:00", "share": "0.123456789", "n": 12345678901},
    )
    with ops_workspace.ops.session() as s:
        event = s.scalars(select(AuditEvent)).one()
    stored = repr((event.subject, event.details))
    for secret in ("ann@example.com", "Ann.Lee+promo@example.co.uk", "+33 6 12 34 56 78", "0612345678"):
        assert secret not in stored
    assert event.details["as_of"] == "2026-01-31"
    assert event.details["at"] == "2026-12-03T08:00:00+00:00"
    assert event.details["share"] == "0.123456789"


@settings(max_examples=60, deadline=None)
@given(
    email=st.emails(),
    phone=st.from_regex(r"\+[1-9][0-9]{7,12}", fullmatch=True),
    before=st.text(alphabet=st.characters(categories=["L", "Zs"]), max_size=12),
)
def test_redaction_removes_any_generated_email_and_phone(email, phone, before):
    cleaned = redact_contact_points({"note": f"{before} {email} {before}", "list": [phone, f"tel {phone}"]})
    flat = repr(cleaned)
    assert email not in flat
    assert phone not in flat


def test_the_migration_package_ships_its_template():
    migrations = Path(__file__).resolve().parents[2] / "src" / "micromarketing" / "store" / "migrations"
    assert (migrations / "script.py.mako").is_file()
    assert list((migrations / "versions").glob("0001_*.py"))
