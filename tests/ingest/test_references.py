"""Issue #12 item 4: orphan customer references are reported; one currency per workspace."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from mm_strategies import currency_files
from typer.testing import CliRunner

from micromarketing.cli.main import app
from micromarketing.errors import ConfigError, IngestError
from micromarketing.workspace import Workspace

HEADER = "order_id,customer_id,ordered_at,amount,currency\n"
runner = CliRunner()


def _tx(path: Path, *rows: str) -> Path:
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def _customers(path: Path, *ids: str) -> Path:
    path.write_text("customer_id\n" + "".join(f"{i}\n" for i in ids), encoding="utf-8")
    return path


def _quarantine(path: Path | None) -> list[dict[str, str]]:
    if path is None:
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# -- orphans ------------------------------------------------------------------------------------
def test_orphans_are_accepted_counted_and_named(workspace: Workspace, tmp_path: Path) -> None:
    workspace.ingest("customers", _customers(tmp_path / "c.csv", "C1"))
    rows = [f"O{i},X{i},2024-01-01,1,EUR" for i in range(7)] + ["O9,C1,2024-01-01,1,EUR"]
    result = workspace.ingest("transactions", _tx(tmp_path / "tx.csv", *rows))
    assert result.accepted == 8
    assert result.orphans == 7
    assert result.orphan_examples == ("X0", "X1", "X2", "X3", "X4")
    assert any("7 accepted rows reference customers not in customers" in w for w in result.warnings)
    # Customers arriving later resolve them: a re-ingest reports none.
    workspace.ingest("customers", _customers(tmp_path / "c2.csv", *[f"X{i}" for i in range(7)]))
    assert workspace.ingest("transactions", tmp_path / "tx.csv").orphans == 0


def test_orphans_of_events_and_consent(workspace: Workspace, tmp_path: Path) -> None:
    events = tmp_path / "e.csv"
    events.write_text(
        "event_id,customer_id,event_type,occurred_at\nE1,Z,page_view,2024-01-01\n", encoding="utf-8"
    )
    consent = tmp_path / "k.csv"
    consent.write_text(
        "customer_id,channel,status,recorded_at\nZ,email,opt_in,2024-01-01\n", encoding="utf-8"
    )
    assert workspace.ingest("events", events).orphan_examples == ("Z",)
    assert workspace.ingest("consent", consent).orphans == 1
    assert workspace.ingest("customers", _customers(tmp_path / "c.csv", "Z")).orphans == 0


def test_orphans_in_the_cli_json(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws").close()
    path = _tx(tmp_path / "tx.csv", "O1,NOBODY,2024-01-01,1,EUR")
    result = runner.invoke(app, ["ingest", "transactions", str(path), "-w", str(tmp_path / "ws"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)[0]
    assert (payload["orphans"], payload["orphan_examples"], payload["currency"]) == (1, ["NOBODY"], "EUR")


# -- currency -----------------------------------------------------------------------------------
def test_first_transactions_fix_the_currency(workspace: Workspace, tmp_path: Path) -> None:
    first = workspace.ingest(
        "transactions",
        _tx(tmp_path / "a.csv", "O1,C1,2024-01-01,1,xxx", "O2,C1,2024-01-02,1,eur", "O3,C1,2024-01-03,1,USD"),
    )
    assert first.currency == "EUR"
    assert first.reasons == {
        "currency: currency not in settings.ingest.currencies": 1,
        "currency: currency USD is not the workspace currency EUR": 1,
    }
    second = workspace.ingest("transactions", _tx(tmp_path / "b.csv", "O4,C1,2024-01-04,1,USD"))
    assert (second.accepted, second.currency) == (0, "EUR")
    assert (
        _quarantine(second.quarantine_path)[0]["reason"] == "currency USD is not the workspace currency EUR"
    )
    assert workspace.profile().currency == "EUR"


def test_init_currency_and_fx_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROMARKETING_INGEST__FX", '{"USD": 0.5}')
    with Workspace.init(tmp_path / "ws", currency="chf") as ws:
        assert ws.settings.ingest.currency == "CHF" and ws.settings.currency == "CHF"
        result = ws.ingest(
            "transactions",
            _tx(
                tmp_path / "a.csv",
                "O1,C1,2024-01-01,10,EUR",
                "O2,C1,2024-01-02,10,USD",
                "O3,C1,2024-01-03,10,CHF",
            ),
        )
        stored = {
            r["order_id"]: (r["amount"], r["currency"])
            for r in ws.table("transactions").to_pyarrow().to_pylist()
        }
    assert result.reasons == {"currency: currency EUR is not the workspace currency CHF": 1}
    assert stored == {"O2": (5.0, "CHF"), "O3": (10.0, "CHF")}


def test_products_follow_the_workspace_currency(workspace: Workspace, tmp_path: Path) -> None:
    workspace.ingest("transactions", _tx(tmp_path / "a.csv", "O1,C1,2024-01-01,1,GBP"))
    path = tmp_path / "p.csv"
    path.write_text("product_id,category,price,currency\nP1,x,1,GBP\nP2,x,1,USD\nP3,x,1,\n", encoding="utf-8")
    result = workspace.ingest("products", path)
    assert (result.accepted, result.currency) == (2, "GBP")


def test_a_setting_contradicting_the_stored_currency_fails_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Workspace.init(tmp_path / "ws") as ws:
        ws.ingest("transactions", _tx(tmp_path / "a.csv", "O1,C1,2024-01-01,1,EUR"))
    monkeypatch.setenv("MICROMARKETING_INGEST__CURRENCY", "USD")
    with (
        Workspace.open(tmp_path / "ws") as ws,
        pytest.raises(IngestError, match="b.csv: settings.ingest.currency is USD"),
    ):
        ws.ingest("transactions", _tx(tmp_path / "b.csv", "O2,C1,2024-01-01,1,USD"))


def test_init_refuses_an_unknown_currency(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--currency 'XYZ'"):
        Workspace.init(tmp_path / "ws", currency="xyz")
    result = runner.invoke(app, ["init", str(tmp_path / "ws2"), "--currency", "eur", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["currency"] == "EUR"


# One workspace and a few ingests per example; no shrinking.
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(currency_files())
def test_generated_currency_mixes_never_make_profile_refuse(files: list[list[str]]) -> None:
    fixed = next(code.strip().upper() for codes in files for code in codes)
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        try:
            n = 0
            for i, codes in enumerate(files):
                rows = []
                for code in codes:
                    n += 1
                    rows.append(f"O{n},C1,2024-01-{1 + n % 28:02d},1,{code}")
                result = ws.ingest("transactions", _tx(Path(tmp) / f"t{i}.csv", *rows))
                assert result.currency == fixed
                assert result.accepted == sum(code.strip().upper() == fixed for code in codes)
                for record in _quarantine(result.quarantine_path):
                    assert record["reason"].endswith(f"is not the workspace currency {fixed}")
            stored = set(ws.table("transactions").currency.to_pyarrow().to_pylist())
            assert stored == {fixed}
            assert ws.profile().currency == fixed
        finally:
            ws.close()
