"""Operations-store URLs for SQLite and a throwaway PostgreSQL server, to run tests on both.

``postgres_url`` (session) starts one server per test process on a free loopback port with
``scripts/postgres.sh`` (or uses ``$MM_TEST_POSTGRES_URL`` when set: an existing server) and
stops it when the process exits.  ``ops_url`` is parametrised: a SQLite file in ``tmp_path``, or a
fresh PostgreSQL database (dropped afterwards) marked ``postgres`` so ``-m "not postgres"``
deselects it.  ``ops_workspace`` is a fresh workspace whose operations store lives at
``ops_url`` (through ``MICROMARKETING_OPS__URL``, so CLI subprocesses of the test see it too).

Other test packages reuse these fixtures with ``tests/privacy/conftest.py``'s three lines.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from micromarketing.workspace import Workspace

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres.sh"
URL_ENV = "MM_TEST_POSTGRES_URL"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_postgres() -> str:
    """The SQLAlchemy URL of a running server: ``$MM_TEST_POSTGRES_URL`` or one started now.

    The URL is remembered in the environment, so every conftest that asks gets the same server.
    """
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    # Directly under /tmp: as root the server runs as `postgres`, which must reach the directory.
    directory = tempfile.mkdtemp(prefix="mm-pg-", dir="/tmp")
    done = subprocess.run(
        ["bash", str(SCRIPT), "start", directory, str(_free_port())], capture_output=True, text=True
    )
    if done.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"cannot start PostgreSQL ({SCRIPT}): {done.stderr.strip()}", pytrace=False)

    def stop() -> None:
        subprocess.run(["bash", str(SCRIPT), "stop", directory], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)

    atexit.register(stop)
    os.environ[URL_ENV] = done.stdout.strip().splitlines()[-1]
    return os.environ[URL_ENV]


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The server's URL (database ``postgres``); tests make their own databases on it."""
    return start_postgres()


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server at ``server_url``; dropped (connections closed) after."""
    name = f"mm_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_libpq(server_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(server_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ops_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty operations store: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ops-store.sqlite'}"
        return
    with fresh_database(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture
def ops_workspace(ops_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A fresh workspace in ``tmp_path / "ws"`` whose operations store is at ``ops_url``."""
    monkeypatch.setenv("MICROMARKETING_OPS__URL", ops_url)
    ws = Workspace.init(tmp_path / "ws")
    try:
        yield ws
    finally:
        ws.close()
