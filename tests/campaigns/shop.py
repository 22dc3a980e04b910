"""The hand-made shop campaign tests run on: 600 customers whose consent, time zones and segments
are known (imported by the tests as ``mm_campaign_shop``, registered in conftest.py)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import ibis
import pandas as pd

from micromarketing import Workspace

N_CUSTOMERS = 600
ZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo", None, "Mars/Olympus_Mons")

CAMPAIGN_YAML = """\
name: {name}
objective: conversion
attribution_days: 7
control_share: 0.10
priority: {priority}
segments:
  - segment: lyon
    variants:
      - {{name: a, template: winback, offer: spring10, channel: email, share: 0.5}}
      - {{name: b, template: winback, channel: email, share: 0.5}}
"""


def customer_ids(n: int = N_CUSTOMERS) -> list[str]:
    return [f"c{i:04d}" for i in range(n)]


def consent_status(i: int) -> str | None:
    """The expected latest email consent of customer ``i`` (None: no record)."""
    if i % 10 == 4:
        return None
    if i % 10 == 7:
        return "opt_out"  # opted in first, then out: the later record wins
    return "opt_in"


def build_shop(root: Path) -> Workspace:
    """600 customers in Lyon and Paris, five time zones (one empty, one invalid), an email and
    SMS consent ledger with overriding records, one order each, two segments, three templates and
    an offer."""
    ws = Workspace.init(root)
    ids = customer_ids()
    ws.warehouse.upsert(
        "customers",
        ibis.memtable(
            pd.DataFrame(
                {
                    "customer_id": ids,
                    "first_name": [None if i % 13 == 0 else f"Name{i}" for i in range(len(ids))],
                    "email": [f"{c}@example.com" for c in ids],
                    "phone": [f"+3361234{i:04d}" for i in range(len(ids))],
                    "city": ["Lyon" if i % 2 == 0 else "Paris" for i in range(len(ids))],
                    "timezone": [ZONES[i % len(ZONES)] for i in range(len(ids))],
                    "signup_date": [date(2023, 1, 1)] * len(ids),
                }
            )
        ),
    )
    rows = []
    for i, c in enumerate(ids):
        status = consent_status(i)
        if status == "opt_out":
            rows.append((c, "email", "opt_in", "2024-01-01T00:00:00Z"))
            rows.append((c, "email", "opt_out", "2024-03-01T00:00:00Z"))
        elif status == "opt_in":
            rows.append((c, "email", "opt_out", "2023-06-01T00:00:00Z"))
            rows.append((c, "email", "opt_in", "2024-02-01T00:00:00Z"))
        if i % 3 == 0:
            rows.append((c, "sms", "opt_in", "2024-02-01T00:00:00Z"))
    ws.warehouse.upsert(
        "consent",
        ibis.memtable(
            pd.DataFrame(
                {
                    "customer_id": [r[0] for r in rows],
                    "channel": [r[1] for r in rows],
                    "status": [r[2] for r in rows],
                    "recorded_at": pd.to_datetime([r[3] for r in rows], utc=True),
                    "source": ["test"] * len(rows),
                    "purpose": ["marketing"] * len(rows),  # part of the ledger's key
                }
            )
        ),
    )
    ws.warehouse.upsert(
        "products",
        ibis.memtable(
            pd.DataFrame(
                {
                    "product_id": ["p1", "p2", "p3"],
                    "name": ["Tea", "Coffee", "Rug & <Co>"],
                    "category": ["grocery", "grocery", "home"],
                    "price": [4.5, 7.25, 120.0],
                    "currency": ["EUR"] * 3,
                    "repeatable": [True, True, True],
                }
            )
        ),
    )
    ws.warehouse.upsert(
        "transactions",
        ibis.memtable(
            pd.DataFrame(
                {
                    "order_id": [f"o{i}" for i in range(len(ids))],
                    "line_no": [1] * len(ids),
                    "customer_id": ids,
                    "ordered_at": pd.to_datetime(
                        [f"2024-0{1 + i % 5}-1{i % 9}T10:00:00Z" for i in range(len(ids))], utc=True
                    ),
                    "product_id": [f"p{1 + i % 3}" for i in range(len(ids))],
                    "category": ["grocery"] * len(ids),
                    "quantity": [1] * len(ids),
                    "amount": [20.0 + i % 50 for i in range(len(ids))],
                    "currency": ["EUR"] * len(ids),
                }
            )
        ),
    )
    ws.profile(as_of=date(2024, 6, 1))
    ws.segments.create("lyon", "city = 'Lyon'", description="Customers in Lyon")
    ws.segments.create("paris", "city = 'Paris'", description="Customers in Paris")
    ws.templates.add(
        "winback",
        {
            "subject": "We miss you, {{ first_name | default('friend') }}",
            "html": "<p>Hello {{ first_name | default('friend') }} from {{ city }}</p>"
            "{% if offer is defined %}<p>{{ offer.headline }}</p>{% endif %}"
            '<a href="{{ unsubscribe_url }}">unsubscribe</a>',
            "text": "Hello {{ first_name | default('friend') }} ({{ segment.name }})\n{{ unsubscribe_url }}",
        },
    )
    ws.templates.add("ping", {"sms": "Hi {{ first_name | default('there') }}! Stop: {{ unsubscribe_url }}"})
    ws.templates.add("textonly", {"text": "Hello {{ first_name | default('friend') }}"})
    ws.templates.add(
        "picks",
        {
            "subject": "Picks for {{ customer.first_name | default('you') }}",
            "text": "{% for p in recommendations %}{{ p.name }} {{ p.price }}\n{% endfor %}"
            "{{ unsubscribe_url }}",
            "html": "{{ product_cards(recommendations) }}<a href='{{ unsubscribe_url }}'>u</a>",
        },
    )
    ws.offers.add("spring10", kind="discount", value=10, cost=0.5)
    return ws
