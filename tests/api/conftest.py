"""Fixtures for the REST API: a small generated, profiled workspace with keys of every role.

The workspace is built once per session (closed) and copied by each module or test that
writes, so tests never share state they change.
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w
from fastapi.testclient import TestClient

from micromarketing import Workspace
from micromarketing.api import create_app
from micromarketing.datasets import generate
from micromarketing.personalize.templates import token_secret
from micromarketing.tokens import unsubscribe_token

KINDS = ("customers", "products", "stores", "transactions", "events", "consent")
SEGMENT = "loyal"
SEGMENT_RULE = "frequency >= 2"


@dataclass(frozen=True)
class Keys:
    viewer: str
    marketer: str
    admin: str
    revoked: str

    def header(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, role)}"}


@dataclass
class Served:
    """A workspace directory, its app's test client and its keys."""

    root: Path
    client: TestClient
    keys: Keys
    customer_id: str

    def token(self, customer_id: str | None = None) -> str:
        with Workspace.open(self.root) as ws:
            return unsubscribe_token(token_secret(ws.context), customer_id or self.customer_id)


@pytest.fixture(scope="session")
def template_ws(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Keys, str]:
    """400 generated customers, profiled, the example template, one segment and four keys."""
    base = tmp_path_factory.mktemp("api")
    generate(base / "data", customers=400, seed=5, fmt="parquet")
    root = base / "ws"
    with Workspace.init(root) as ws:
        for kind in KINDS:
            ws.ingest(kind, next((base / "data").glob(f"{kind}.*")))
        ws.profile()
        ws.templates.install_examples()
        ws.segments.create(SEGMENT, SEGMENT_RULE)
        keys = Keys(
            viewer=ws.api_keys.create("viewer", "v").key,
            marketer=ws.api_keys.create("marketer", "m").key,
            admin=ws.api_keys.create("admin", "a").key,
            revoked=ws.api_keys.create("admin", "r").key,
        )
        ws.api_keys.revoke(4)
        member = ws.segments.members(SEGMENT, limit=1)[0][0]
    return root, keys, member


def copy_workspace(template: Path, to: Path) -> Path:
    shutil.copytree(template, to)
    return to


@pytest.fixture
def served(template_ws: tuple[Path, Keys, str], tmp_path: Path) -> Iterator[Served]:
    """A private copy of the workspace and a client of its app (rate limit off)."""
    template, keys, member = template_ws
    root = copy_workspace(template, tmp_path / "ws")
    with TestClient(create_app(root, rate_limit=0)) as client:
        yield Served(root, client, keys, member)


@pytest.fixture(scope="module")
def shared(template_ws: tuple[Path, Keys, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One copy and client per module, for tests that only read (or write what no test reads)."""
    template, keys, member = template_ws
    root = copy_workspace(template, tmp_path_factory.mktemp("shared") / "ws")
    with TestClient(create_app(root, rate_limit=0)) as client:
        yield Served(root, client, keys, member)


@pytest.fixture(scope="module")
def shop(template_ws, tmp_path_factory) -> Iterator[Served]:
    """A copy of the API workspace for campaigns: quiet hours and caps off (the time of day
    must not matter)."""
    template, keys, member = template_ws
    root = copy_workspace(template, tmp_path_factory.mktemp("campaigns") / "ws")
    settings = root / "micromarketing.toml"
    data = tomllib.loads(settings.read_text())
    data.setdefault("policy", {}).update({"quiet_hours": "", "frequency_cap": ""})
    settings.write_text(tomli_w.dumps(data))
    with TestClient(create_app(root, rate_limit=0)) as client:
        yield Served(root, client, keys, member)


TOPICS = {"newsletter": "Our monthly newsletter", "offers": "Offers & discounts"}


@pytest.fixture
def topical(template_ws: tuple[Path, Keys, str], tmp_path: Path) -> Iterator[Served]:
    """A private copy whose preference centre offers two topics (``[preferences.topics]``)."""
    template, keys, member = template_ws
    root = copy_workspace(template, tmp_path / "ws")
    settings = tomllib.loads((root / "micromarketing.toml").read_text())
    settings["preferences"] = {"topics": TOPICS}
    (root / "micromarketing.toml").write_text(tomli_w.dumps(settings))
    with TestClient(create_app(root, rate_limit=0)) as client:
        yield Served(root, client, keys, member)
