"""Issue #12 item 8 (ingest side): one clear line, exit 2, naming the file; init over a file; padded ids."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from mm_strategies import delimited_headers
from typer.testing import CliRunner

from micromarketing.cli.main import app
from micromarketing.workspace import Workspace

runner = CliRunner()


def _workspace(tmp_path: Path) -> Path:
    Workspace.init(tmp_path / "ws").close()
    return tmp_path / "ws"


def _one_clear_line(result, name: str) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output
    text = " ".join(result.output.split())  # Rich wraps long lines; a progress bar may precede
    assert text.count("error:") == 1
    message = text.split("error:", 1)[1]
    assert name in message
    return message


def test_directory_is_named_as_a_directory(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    (tmp_path / "data").mkdir()
    result = runner.invoke(app, ["ingest", "customers", str(tmp_path / "data"), "-w", str(ws)])
    text = _one_clear_line(result, "data")
    assert "is a directory" in text and "no such file" not in text


def test_semicolon_delimited_csv_gets_a_hint(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    path = tmp_path / "c.csv"
    path.write_text("customer_id;email\nA;a@b.co\n", encoding="utf-8")
    result = runner.invoke(app, ["ingest", "customers", str(path), "-w", str(ws)])
    assert "looks semicolon-delimited" in _one_clear_line(result, "c.csv")


def test_truncated_gzip_is_one_line_exit_2(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    whole = gzip.compress(b"customer_id\n" + b"".join(f"C{i}\n".encode() for i in range(5000)))
    for cut in (20, len(whole) // 2):
        path = tmp_path / f"c{cut}.csv.gz"
        path.write_bytes(whole[:cut])
        result = runner.invoke(app, ["ingest", "customers", str(path), "-w", str(ws)])
        assert "cannot be read" in _one_clear_line(result, path.name)


def test_init_over_a_file_is_a_conflict(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x", encoding="utf-8")
    for target in ("taken", "taken/ws"):
        result = runner.invoke(app, ["init", str(tmp_path / target)])
        assert "taken" in _one_clear_line(result, "taken")


def test_customers_show_trims_a_padded_id(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    path = tmp_path / "c.csv"
    path.write_text("customer_id,first_name\n  C1 ,Ann\n", encoding="utf-8")
    assert runner.invoke(app, ["ingest", "customers", str(path), "-w", str(ws)]).exit_code == 0
    result = runner.invoke(app, ["customers", "show", " C1  ", "-w", str(ws), "--json"])
    assert result.exit_code == 0, result.output
    assert '"customer_id": "C1"' in result.stdout


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(delimiter=st.sampled_from([(";", "semicolon"), ("\t", "tab"), ("|", "pipe")]), data=st.data())
def test_generated_other_delimiters_get_the_hint(delimiter: tuple[str, str], data: st.DataObject) -> None:
    char, label = delimiter
    header = data.draw(delimited_headers(char))
    with tempfile.TemporaryDirectory() as tmp:
        ws = _workspace(Path(tmp))
        path = Path(tmp) / "tx.csv"
        row = char.join("1" for _ in header.split(char))
        path.write_text(header + "\n" + row + "\n", encoding="utf-8")
        result = runner.invoke(app, ["ingest", "transactions", str(path), "-w", str(ws)])
        assert f"looks {label}-delimited" in _one_clear_line(result, "tx.csv")
