"""Fixtures shared by every test package (keep this small; package conftests hold the rest)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from micromarketing.workspace import Workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """A fresh, empty workspace in ``tmp_path / "ws"``, closed after the test."""
    ws = Workspace.init(tmp_path / "ws")
    try:
        yield ws
    finally:
        ws.close()
