"""`micromarketing datasets generate|cdnow` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from micromarketing.cli.datasets import app

runner = CliRunner()


def test_generate_json(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "--customers", "1200", "--seed", "3", "--out", str(tmp_path),
                                 "--format", "parquet", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["customers"] == 1200 and payload["fmt"] == "parquet"
    assert payload["rows"]["customers"] == 1200 and payload["rows"]["stores"] == 40
    assert Path(payload["paths"]["events"]).name == "events.parquet"
    assert (tmp_path / "transactions.parquet").exists()


def test_generate_table_output_and_progress(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "-n", "1500", "--out", str(tmp_path), "--chunk-size", "1000"])
    assert result.exit_code == 0, result.output
    assert "transactions.csv" in result.stdout and "1,500" in result.stdout
    assert "1500/1500" in result.stderr  # the Rich progress bar reached the total
    assert len((tmp_path / "customers.csv").read_text().splitlines()) == 1501


def test_generate_rejects_bad_options(tmp_path: Path) -> None:
    assert runner.invoke(app, ["generate", "--customers", "0", "--out", str(tmp_path)]).exit_code == 2
    assert runner.invoke(app, ["generate", "--out", str(tmp_path), "--format", "xlsx"]).exit_code == 2
    (tmp_path / "f").write_text("x")
    result = runner.invoke(app, ["generate", "-n", "5", "--out", str(tmp_path / "f")])
    assert result.exit_code == 2 and "not a directory" in result.stderr


def test_cdnow(tmp_path: Path) -> None:
    result = runner.invoke(app, ["cdnow", "--out", str(tmp_path), "--which", "sample", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["rows"] == 6_919 and payload["customer_count"] == 2_357
    assert Path(payload["transactions"]) == tmp_path / "transactions.csv"
    plain = runner.invoke(app, ["cdnow", "--out", str(tmp_path / "m")])
    assert plain.exit_code == 0 and "69,659" in plain.stdout
