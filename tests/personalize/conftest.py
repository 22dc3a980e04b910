"""Fixtures for personalisation tests: a generated workspace (3,000 customers) and a tiny hand-made one."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from datetime import date
from pathlib import Path

import ibis
import pandas as pd
import pyarrow.parquet as pq
import pytest

from micromarketing import Workspace
from micromarketing.datasets import generate

KINDS = ("customers", "products", "stores", "transactions", "events", "consent")


def load_generated(ws: Workspace, out: Path) -> None:
    """Put generated files into the warehouse: through ingest when it exists, else typed Parquet upserts."""
    if importlib.util.find_spec("micromarketing.ingest") is not None and hasattr(
        importlib.import_module("micromarketing.ingest"), "ingest_file"
    ):
        for kind in KINDS:
            path = next(out.glob(f"{kind}.*"))
            ws.ingest(kind, path)
        return
    for kind in KINDS:
        ws.warehouse.upsert(kind, ibis.memtable(pq.read_table(out / f"{kind}.parquet")))


@pytest.fixture(scope="session")
def generated_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """3,000 generated customers, profiled; shared read-mostly by the tests of a worker."""
    root = tmp_path_factory.mktemp("personalize")
    out = root / "data"
    generate(out, customers=3000, seed=11, fmt="parquet")
    ws = Workspace.init(root / "ws")
    load_generated(ws, out)
    ws.profile()
    yield ws
    ws.close()


def build_tiny(root: Path) -> Workspace:
    """Four customers (one with an HTML-injection name, one with no first name), six products."""
    ws = Workspace.init(root)
    w = ws.warehouse
    w.upsert(
        "customers",
        ibis.memtable(
            pd.DataFrame(
                {
                    "customer_id": ["c1", "c2", "c3", "c4"],
                    "first_name": ["Ada", "<script>alert(1)</script>", None, "Zoë"],
                    "email": ["ada@example.com", "x@example.com", "c3@example.com", "zoe@example.com"],
                    "city": ["Lyon", "Lyon", "Paris", "Paris"],
                    "birth_date": [date(1990, 1, 1), date(1985, 5, 5), date(1970, 7, 7), date(2000, 2, 2)],
                    "signup_date": [date(2022, 1, 1)] * 4,
                }
            )
        ),
    )
    w.upsert(
        "products",
        ibis.memtable(
            pd.DataFrame(
                {
                    "product_id": ["p1", "p2", "p3", "p4", "p5", "p6"],
                    "name": ["Tea", "Coffee", "Sofa", "Lamp", "Mug", "Rug & <Co>"],
                    "category": ["grocery", "grocery", "furniture", "home", "home", "home"],
                    "price": [4.5, 7.25, 499.0, 35.0, 9.9, 120.0],
                    "currency": ["EUR"] * 6,
                    "repeatable": [True, True, False, True, True, True],
                }
            )
        ),
    )
    tx = [
        ("o1", 1, "c1", "2024-01-10", "p1"),
        ("o1", 2, "c1", "2024-01-10", "p2"),
        ("o2", 1, "c1", "2024-02-10", "p3"),
        ("o3", 1, "c2", "2024-01-12", "p1"),
        ("o3", 2, "c2", "2024-01-12", "p2"),
        ("o4", 1, "c2", "2024-03-01", "p5"),
        ("o5", 1, "c3", "2024-03-05", "p3"),
        ("o5", 2, "c3", "2024-03-05", "p4"),
    ]
    w.upsert(
        "transactions",
        ibis.memtable(
            pd.DataFrame(
                {
                    "order_id": [t[0] for t in tx],
                    "line_no": [t[1] for t in tx],
                    "customer_id": [t[2] for t in tx],
                    "ordered_at": pd.to_datetime([t[3] + "T10:00Z" for t in tx]),
                    "product_id": [t[4] for t in tx],
                    "category": ["x"] * len(tx),
                    "quantity": [1] * len(tx),
                    "amount": [10.0] * len(tx),
                    "currency": ["EUR"] * len(tx),
                }
            )
        ),
    )
    ws.profile(as_of=date(2024, 6, 1))
    return ws


@pytest.fixture(scope="session")
def _tiny_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny workspace built once (closed), copied by each test that writes to it."""
    root = tmp_path_factory.mktemp("tiny-template") / "ws"
    build_tiny(root).close()
    return root


@pytest.fixture
def tiny_ws(tmp_path: Path, _tiny_template: Path) -> Workspace:
    """A fresh copy of the tiny workspace per test (tests may write to it)."""
    shutil.copytree(_tiny_template, tmp_path / "ws")
    ws = Workspace.open(tmp_path / "ws")
    yield ws
    ws.close()


@pytest.fixture(scope="module")
def tiny_shared(tmp_path_factory: pytest.TempPathFactory, _tiny_template: Path) -> Workspace:
    """A tiny workspace shared by a module's tests (they only add uniquely named objects)."""
    root = tmp_path_factory.mktemp("tiny") / "ws"
    shutil.copytree(_tiny_template, root)
    ws = Workspace.open(root)
    yield ws
    ws.close()
