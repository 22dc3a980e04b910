"""Result models: one convention (Pydantic) with strict JSON — a missing number is null."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

from micromarketing.cli._common import print_json
from micromarketing.ingest.results import IngestResult
from micromarketing.segments.personas import Persona, Trait
from micromarketing.segments.results import DiscoveredSegment, DiscoveryResult, KScore


def test_a_non_finite_number_becomes_null():
    score = KScore(k=3, stability=math.nan, silhouette=math.inf, smallest=10, eligible=False)
    assert score.stability is None and score.silhouette is None
    assert json.loads(score.model_dump_json()) == {
        "k": 3, "stability": None, "silhouette": None, "smallest": 10, "eligible": False}


def test_cli_json_of_a_result_is_plain(capsys):
    result = IngestResult(kind="customers", path=Path("data/c.csv"), rows_read=2, accepted=1, rejected=1,
                          quarantine_path=None, reasons={"email: bad": 1}, warnings=("extra column x",))
    print_json([result])
    assert json.loads(capsys.readouterr().out) == [{
        "kind": "customers", "path": "data/c.csv", "rows_read": 2, "accepted": 1, "rejected": 1,
        "quarantine_path": None, "reasons": {"email: bad": 1}, "warnings": ["extra column x"], "sha256": "",
        "currency": None, "orphans": 0, "orphan_examples": []}]


def test_a_discovery_serialises_its_personas(capsys):
    persona = Persona(cluster=0, name="Urban regulars", tagline="t", description="d", size=40, share=0.4,
                      revenue=100.0, revenue_share=0.5, avg_clv=None, avg_order_value=math.nan,
                      traits=[Trait("frequency", "numeric", 6.0, 2.0, 1.2, None, "buys often")])
    result = DiscoveryResult(
        as_of=date(2024, 1, 1), prefix="discovered", k=1, k_mode="fixed", criterion="fixed k", scores=[],
        features=["frequency"], customers=100, excluded_no_orders=0, min_size=10, seed=0, fitted_on=100,
        segments=[DiscoveredSegment(name="discovered_01", version=1, cluster=0, size=40, persona=persona)],
    )
    print_json(result)
    out = json.loads(capsys.readouterr().out)
    assert out["as_of"] == "2024-01-01"
    assert out["segments"][0]["persona"]["name"] == "Urban regulars"
    assert out["segments"][0]["persona"]["avg_order_value"] is None
    assert out["segments"][0]["persona"]["traits"][0]["text"] == "buys often"
