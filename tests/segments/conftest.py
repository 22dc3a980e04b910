"""Fixtures for segment tests: the hand-checkable population in a fresh DuckDB workspace."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _load_population():
    name = "mm_segments_population"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("population.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


population = _load_population()


@pytest.fixture
def ws(tmp_path):
    """A workspace holding the population (function-scoped: tests may write segments)."""
    workspace = population.build_population(tmp_path / "ws")
    yield workspace
    workspace.close()


@pytest.fixture(scope="module")
def shared_ws(tmp_path_factory):
    """A read-only workspace holding the population, shared by a module's tests."""
    workspace = population.build_population(tmp_path_factory.mktemp("segments") / "ws")
    yield workspace
    workspace.close()
