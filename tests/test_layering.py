"""The layering rules of DESIGN.md, checked mechanically on the source tree.

* Only ``micromarketing.store`` opens connections: nothing else imports duckdb, pyspark or
  SQLAlchemy's engine factory.
* ``cli/`` (and later ``api/``, ``web/``) are thin: they import only the Workspace facade, the
  errors, the package root and result models (modules named ``results``), besides themselves.
* Domain packages never import the facade: ``workspace.py`` sits above them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import micromarketing

SRC = Path(__file__).resolve().parents[1] / "src" / "micromarketing"
BACKENDS = ("duckdb", "pyspark")
THIN_LAYERS = ("cli", "api", "web")
THIN_FORBIDDEN = ("micromarketing.store", "duckdb", "pyspark", "sqlalchemy", "ibis")
THIN_ALLOWED = ("micromarketing.workspace", "micromarketing.errors", "micromarketing.progress")
# Pure presentation the dashboard shares with the HTML report (frames in, figure/markup out; no store).
PRESENTATION = {"web": ("micromarketing.measure.charts", "micromarketing.measure.report.chart_html")}
DOMAIN = ("ingest", "profiles", "segments", "personalize", "campaigns", "channels", "measure", "privacy")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported name) for every import; `from m import n` yields both m and m.n."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _modules(*parts: str) -> list[Path]:
    return sorted(SRC.joinpath(*parts).rglob("*.py"))


def _hits(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_only_store_opens_connections(path):
    if path.is_relative_to(SRC / "store"):
        return
    bad = [
        f"line {line}: {name}"
        for line, name in _imports(path)
        if _hits(name, BACKENDS) or name == "sqlalchemy.create_engine"
    ]
    assert not bad, f"{path.relative_to(SRC)} reaches a database backend directly: {bad}"


@pytest.mark.parametrize(
    "path",
    [p for layer in THIN_LAYERS if SRC.joinpath(layer).exists() for p in _modules(layer)],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_thin_layers_go_through_the_core(path):
    bad = [f"line {line}: {name}" for line, name in _imports(path) if _hits(name, THIN_FORBIDDEN)]
    assert not bad, f"{path.relative_to(SRC)} bypasses the core: {bad}"


def _allowed_in_thin_layer(name: str, layer: str) -> bool:
    """The package root's exports, the facade, errors, progress, result models, the layer itself."""
    if not _hits(name, ("micromarketing",)) or name == "micromarketing":
        return True
    if _hits(name, (*THIN_ALLOWED, f"micromarketing.{layer}")) or "results" in name.split("."):
        return True
    if any(name == p or p.startswith(name + ".") for p in PRESENTATION.get(layer, ())):
        return True
    parts = name.split(".")
    return len(parts) == 2 and parts[1] in micromarketing.__all__


@pytest.mark.parametrize(
    "path",
    [p for layer in THIN_LAYERS if SRC.joinpath(layer).exists() for p in _modules(layer)],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_thin_layers_import_only_the_facade(path):
    layer = path.relative_to(SRC).parts[0]
    bad = [f"line {line}: {name}" for line, name in _imports(path) if not _allowed_in_thin_layer(name, layer)]
    assert not bad, f"{path.relative_to(SRC)} reaches past the facade: {bad}"


@pytest.mark.parametrize(
    "path",
    [p for pkg in DOMAIN if SRC.joinpath(pkg).exists() for p in _modules(pkg)],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_domain_packages_never_import_the_facade(path):
    bad = [
        f"line {line}: {name}" for line, name in _imports(path) if _hits(name, ("micromarketing.workspace",))
    ]
    assert not bad, f"{path.relative_to(SRC)} imports the Workspace facade: {bad}"
