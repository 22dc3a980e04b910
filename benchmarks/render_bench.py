"""Render subject + HTML + text for many recipients with 5 recommended products each.

Compares, in the same run and on the same data:

* **naive** — a plain loop over Jinja2's ``SandboxedEnvironment``: recipients already in memory as
  dicts, ``Template.render`` called for each part, every product card included (rendered) once per
  recipient and product;
* **end to end** — :func:`micromarketing.personalize.render_for_customers` for every customer id,
  the fitted item-item recommender scoring each batch of recipients (customers have 3 order lines);
* **micromarketing** — :func:`micromarketing.personalize.templates.render_rows`: templates compiled
  once, recipient data read from the DuckDB warehouse in Arrow batches, product cards rendered once
  per product, the compiled render functions called directly.  The time includes the warehouse
  reads.

Both run single-threaded (DuckDB threads = 1).  Target: ≥ 20,000 messages/s for micromarketing on
one core.  Wall-clock and process CPU time are both printed: on a shared machine the CPU-time figure
is the one-core throughput, the wall-clock one also counts time spent waiting for the CPU.

    .venv/bin/python benchmarks/render_bench.py [--recipients 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ["MICROMARKETING_WAREHOUSE__THREADS"] = "1"

import ibis  # noqa: E402
import jinja2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from jinja2.sandbox import SandboxedEnvironment  # noqa: E402

from micromarketing import Workspace  # noqa: E402
from micromarketing.personalize.templates import (  # noqa: E402
    DEFAULT_BLOCKS_DIR,
    EXAMPLES_DIR,
    Product,
    add_template,
    compile_template,
    render_rows,
)

K = 5
N_PRODUCTS = 360


def build(root: Path, n: int) -> tuple[Workspace, dict[str, list[Product]], list[dict]]:
    rng = np.random.default_rng(0)
    ws = Workspace.init(root / "ws")
    ids = [f"C{i:07d}" for i in range(1, n + 1)]
    first = np.array(["Léa", "Hugo", "Chloé", "Louis", "Inès", "<b>Zoé</b>", "Jules", "Manon"])
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "first_name": first[rng.integers(0, len(first), n)],
            "email": [f"{c.lower()}@example.com" for c in ids],
            "city": np.array(["Lyon", "Paris", "Lille", "Nantes"])[rng.integers(0, 4, n)],
        }
    )
    ws.warehouse.upsert("customers", ibis.memtable(customers))
    products = pd.DataFrame(
        {
            "product_id": [f"P{i:04d}" for i in range(1, N_PRODUCTS + 1)],
            "name": [f"Product & Co {i}" for i in range(1, N_PRODUCTS + 1)],
            "category": [f"cat{i % 12}" for i in range(N_PRODUCTS)],
            "price": np.round(rng.uniform(2, 500, N_PRODUCTS), 2),
            "currency": "EUR",
            "repeatable": True,
        }
    )
    ws.warehouse.upsert("products", ibis.memtable(products))
    catalogue = {
        r.product_id: Product(r.product_id, r.name, r.category, r.price, r.currency)
        for r in products.itertuples()
    }
    plist = list(catalogue.values())
    picks = rng.integers(0, N_PRODUCTS, (n, K))
    recs = {c: [plist[j] for j in row] for c, row in zip(ids, picks, strict=True)}
    # three order lines per customer, so that the end-to-end run scores a real fitted recommender
    lines = picks[:, :3].ravel()
    tx = pd.DataFrame(
        {
            "order_id": np.repeat([f"O{i}" for i in range(n)], 3),
            "line_no": np.tile([1, 2, 3], n),
            "customer_id": np.repeat(np.array(ids), 3),
            "product_id": products.product_id.to_numpy()[lines],
            "ordered_at": pd.Timestamp("2026-01-01T10:00Z")
            + pd.to_timedelta(rng.integers(0, 150, 3 * n), "D"),
            "amount": 10.0,
            "currency": "EUR",
        }
    )
    ws.warehouse.upsert("transactions", ibis.memtable(tx))
    add_template(
        ws,
        "bench",
        sorted(p for p in EXAMPLES_DIR.iterdir() if p.stem == "seasonal_picks" and p.suffix != ".sms"),
    )
    rows = customers.to_dict(orient="records")
    return ws, recs, rows


def naive(rows: list[dict], recs: dict[str, list[Product]]) -> tuple[float, float]:
    """A plain sandboxed loop: every part rendered with Template.render, cards included per recipient."""
    sources = {p.name: p.read_text() for p in DEFAULT_BLOCKS_DIR.iterdir() if p.is_file()}
    html = (
        (EXAMPLES_DIR / "seasonal_picks.html")
        .read_text()
        .replace(
            "{{ product_cards(recommendations) }}",
            "{% for p in recommendations %}{% with product = p %}"
            '{% include "product_card.html" %}{% endwith %}{% endfor %}',
        )
    )
    text = (
        (EXAMPLES_DIR / "seasonal_picks.txt")
        .read_text()
        .replace(
            "{{ product_cards_text(recommendations) }}",
            "{% for p in recommendations %}{% with product = p %}"
            '{% include "product_card.txt" %}{% endwith %}\n{% endfor %}',
        )
    )
    sources |= {
        "m.subject": (EXAMPLES_DIR / "seasonal_picks.subject").read_text(),
        "m.html": html,
        "m.txt": text,
    }
    env = SandboxedEnvironment(
        loader=jinja2.DictLoader(sources),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(["html"]),
    )
    parts = [env.get_template(n) for n in ("m.subject", "m.html", "m.txt")]
    start, cpu = time.perf_counter(), time.process_time()
    total = 0
    for row in rows:
        ctx = {k: v for k, v in row.items() if v is not None}
        ctx["recommendations"] = recs[row["customer_id"]]
        ctx["unsubscribe_url"] = "https://example.invalid/unsubscribe?c=" + row["customer_id"]
        for t in parts:
            total += len(t.render(ctx))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert total > 0
    return elapsed, cpu


def ours(ws: Workspace, recs: dict[str, list[Product]]) -> tuple[float, float, int]:
    start, cpu = time.perf_counter(), time.process_time()
    tpl = compile_template(ws, "bench")
    customers = ws.table("customers")
    n = 0
    chars = 0
    for msg in render_rows(
        ws, tpl, customers, k=K, recommender=lambda ids: {c: recs[c] for c in ids}, batch_size=20_000
    ):
        n += 1
        chars += len(msg.subject) + len(msg.html) + len(msg.text)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert chars > 0
    return elapsed, cpu, n


def end_to_end(ws: Workspace) -> tuple[float, float, int]:
    """The public API: render_for_customers with the fitted item-item recommender scoring each batch."""
    from micromarketing.personalize import fit_recommender, render_for_customers

    fit_recommender(ws, method="item")
    ids = ws.table("customers").customer_id.execute().tolist()
    start, cpu = time.perf_counter(), time.process_time()
    n = sum(1 for _ in render_for_customers(ws, "bench", ids, k=K, batch_size=20_000))
    return time.perf_counter() - start, time.process_time() - cpu, n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws, recs, rows = build(Path(tmp), args.recipients)
        naive_wall, naive_cpu = naive(rows, recs)
        ours_wall, ours_cpu, n = ours(ws, recs)
        e2e_wall, e2e_cpu, n_e2e = end_to_end(ws)
        ws.close()
    assert n_e2e == args.recipients, n_e2e
    assert n == args.recipients, n
    r = args.recipients
    print(f"recipients: {r:,}, {K} recommendations each, parts: subject + HTML + text, single thread")
    print("messages/s            wall clock   CPU time (1 core; unaffected by other processes)")
    print(f"naive sandbox loop    {r / naive_wall:>10,.0f}   {r / naive_cpu:>10,.0f}   (data in memory)")
    print(f"micromarketing        {r / ours_wall:>10,.0f}   {r / ours_cpu:>10,.0f}   (incl. warehouse reads)")
    print(
        f"end to end            {r / e2e_wall:>10,.0f}   {r / e2e_cpu:>10,.0f}   "
        "(render_for_customers: + recommender scoring per batch)"
    )
    print(
        f"speed-up: {naive_wall / ours_wall:.2f}x wall, {naive_cpu / ours_cpu:.2f}x CPU; "
        f"target >= 20,000 messages/s per core: {'met' if r / ours_cpu >= 20_000 else 'NOT met'} (CPU), "
        f"{'met' if r / ours_wall >= 20_000 else 'NOT met'} (wall; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
