"""Fixtures for campaign tests: the shop of ``shop.py`` built once per session and copied for each
module (or test) that writes to it."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from micromarketing import Workspace


def _register(name: str, filename: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / filename)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


shop_module = _register("mm_campaign_shop", "shop.py")
CAMPAIGN_YAML = shop_module.CAMPAIGN_YAML


@pytest.fixture(scope="session")
def _shop_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("campaign-shop") / "ws"
    shop_module.build_shop(root).close()
    return root


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, _shop_template: Path) -> Iterator[Workspace]:
    """A copy of the shop for one test module (its tests may write campaigns and outbox rows)."""
    root = tmp_path_factory.mktemp("shop") / "ws"
    shutil.copytree(_shop_template, root)
    ws = Workspace.open(root)
    yield ws
    ws.close()


@pytest.fixture
def fresh_shop(tmp_path: Path, _shop_template: Path) -> Iterator[Workspace]:
    """A copy of the shop for one test."""
    shutil.copytree(_shop_template, tmp_path / "ws")
    ws = Workspace.open(tmp_path / "ws")
    yield ws
    ws.close()


@pytest.fixture
def campaign_file(tmp_path: Path):
    """Write a campaign YAML file (``CAMPAIGN_YAML`` filled in, or the text given)."""

    def write(name: str = "spring", text: str | None = None, priority: int = 0) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(text if text is not None else CAMPAIGN_YAML.format(name=name, priority=priority))
        return path

    return write


# The PostgreSQL server fixture of tests/store/conftest.py (see tests/privacy/conftest.py).
_register("mm_store_fixtures", "../store/conftest.py")

from mm_store_fixtures import postgres_url  # noqa: E402, F401
