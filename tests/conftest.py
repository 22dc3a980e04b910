"""Fixtures shared by every test package (keep this small; package conftests hold the rest).

``tests/strategies.py`` (Hypothesis strategies) is registered as the module ``mm_strategies``:
with ``--import-mode=importlib`` the tests directory is not on ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from micromarketing.workspace import Workspace


def _register(name: str, filename: str) -> None:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(filename))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_register("mm_strategies", "strategies.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with Spark tests first, then modules with slow tests, the rest after (otherwise in
    collection order, tests of a module together).

    ``pytest -n 2 --dist loadfile`` hands modules out in this order: collected last, the Spark and
    dashboard modules left one worker running alone for the last minutes of ``make test``.
    """
    rank: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        here = 0 if item.get_closest_marker("spark") else 1 if item.get_closest_marker("slow") else 2
        rank[module] = min(rank.get(module, 2), here)
    items.sort(key=lambda item: rank[item.nodeid.split("::")[0]])


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """A fresh, empty workspace in ``tmp_path / "ws"``, closed after the test."""
    ws = Workspace.init(tmp_path / "ws")
    try:
        yield ws
    finally:
        ws.close()
