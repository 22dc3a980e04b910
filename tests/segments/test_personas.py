"""Persona writing from hand-made cluster facts: names, taglines, paragraphs, traits, uniqueness."""

from __future__ import annotations

from micromarketing.segments.features import FEATURES
from micromarketing.segments.personas import (
    CategoryFact,
    ClusterFacts,
    NumericFact,
    build_personas,
    persona_name,
)

BASE = {  # base means/medians and a neutral cluster value, per feature
    "recency_days": 90.0,
    "frequency": 8.0,
    "monetary": 700.0,
    "avg_order_value": 100.0,
    "tenure_days": 700.0,
    "age": 47.0,
    "store_distance_km": 10.0,
    "store_order_share": 0.3,
    "email_opens_90d": 3.0,
    "email_clicks_90d": 1.0,
}
CATS = {
    "share_eco": "eco",
    "share_sports": "sports",
    "share_grocery": "grocery",
    "share_clearance": "clearance",
}


def facts(cluster=0, size=400, *, d=None, mean=None, categorical=None, interval=30.0) -> ClusterFacts:
    """Cluster facts where every feature is neutral except the given standardised differences."""
    d, mean = d or {}, mean or {}
    numeric = {}
    for name, base in {**BASE, **{c: 0.05 for c in CATS}}.items():
        spec = FEATURES.get(name)
        value = mean.get(name, base)
        numeric[name] = NumericFact(
            name,
            spec.label if spec else f"share of spend on {CATS[name]}",
            spec.unit if spec else "share",
            value,
            value,
            base,
            base,
            d.get(name, 0.0),
        )
    return ClusterFacts(
        cluster=cluster,
        size=size,
        share=size / 3000,
        revenue=size * 700.0,
        revenue_share=size / 3000,
        avg_clv=None,
        numeric=numeric,
        categories=dict(CATS),
        categorical=categorical or {},
        order_interval_days=interval,
        base_order_interval_days=60.0,
        as_of="2026-07-01",
    )


def young_urban_eco() -> ClusterFacts:
    return facts(
        d={
            "age": -1.5,
            "store_distance_km": -1.0,
            "share_eco": 2.2,
            "share_sports": 1.8,
            "email_opens_90d": 0.3,
            "avg_order_value": -0.4,
        },
        mean={
            "age": 29.0,
            "store_distance_km": 1.2,
            "share_eco": 0.34,
            "share_sports": 0.26,
            "avg_order_value": 45.0,
            "email_opens_90d": 3.5,
            "store_order_share": 0.08,
        },
        categorical={
            "age_band": [
                CategoryFact("age_band", "25-34", 0.99, 0.16),
                CategoryFact("age_band", "35-44", 0.01, 0.24),
            ],
            "city": [CategoryFact("city", "Paris", 0.6, 0.3)],
            "interest": [
                CategoryFact("interest", "running", 0.5, 0.06),
                CategoryFact("interest", "family", 0.2, 0.2),
            ],
        },
    )


def test_name_comes_from_the_strongest_traits():
    assert persona_name(young_urban_eco()) == "Young urban eco & sports shoppers"
    store = facts(d={"age": 1.4, "store_distance_km": -1.2, "store_order_share": 1.7}, mean={"age": 65.0})
    assert persona_name(store) == "Senior local store regulars"
    lapsed = facts(d={"recency_days": 1.1, "avg_order_value": 1.3, "share_clearance": -0.5})
    assert persona_name(lapsed) == "Lapsed high-value shoppers"
    bargain = facts(d={"share_clearance": 2.5, "email_clicks_90d": 1.7, "avg_order_value": -1.2})
    assert persona_name(bargain) == "Small-basket e-mail-engaged bargain hunters"
    assert persona_name(facts()) == "Shoppers"  # nothing distinctive: no made-up adjectives


def test_description_tagline_and_traits():
    (p,) = build_personas([young_urban_eco()], currency="EUR")
    assert p.tagline == "Young urban eco & sports shoppers, 25–34, buy monthly, average e-mail engagement"
    text = p.description
    assert text.startswith("400 customers (13% of customers with orders) bringing 13% of revenue.")
    assert "Most are aged 25–34 (99% vs 16% overall)" in text
    assert "living mainly in Paris (60% vs 30% overall)" in text
    assert "They buy monthly (median 30 days between orders)" in text
    assert "An average order is 45 EUR (base 100 EUR)" in text
    assert "eco (34%), sports (26%)" in text
    assert "8% of their orders are placed in a store" in text
    assert "Interests: running (50% vs 6%)" in text and "family" not in text  # lift 1.0 is no trait
    # Traits: strongest first, each with its number; neutral features are not traits.
    fields = [t.field for t in p.traits]
    assert fields[0] == "share_eco"
    assert "age" in fields and "frequency" not in fields
    age = next(t for t in p.traits if t.field == "age")
    assert age.std_diff == -1.5 and age.text == "age: 29 years vs 47 years overall (-1.5 sd)"
    band = next(t for t in p.traits if t.field == "age_band")
    assert band.lift == round(0.99 / 0.16, 3) and band.kind == "category"
    d = p.to_dict()
    assert d["traits"][0]["field"] == "share_eco" and isinstance(d["revenue_share"], float)


def test_names_are_unique_and_deterministic():
    a = facts(0, d={"share_grocery": 2.0, "age": 1.2}, mean={"age": 60.0})
    b = facts(1, d={"share_grocery": 1.9, "age": 1.0, "frequency": 1.4}, mean={"age": 61.0})
    c = facts(2, d={"share_grocery": 1.9, "age": 1.0}, mean={"age": 61.0})
    first = [p.name for p in build_personas([a, b, c])]
    assert first == [p.name for p in build_personas([a, b, c])]
    assert len(set(first)) == 3
    assert first[0] == "Senior grocery shoppers"
    assert first[1].startswith("Senior frequent grocery shoppers")
    assert first[2] == "Senior grocery shoppers 2"


def test_rhythm_and_engagement_words():
    weekly = build_personas([facts(interval=6, d={"email_opens_90d": -0.8, "email_clicks_90d": -0.9})])[0]
    assert "buy weekly" in weekly.tagline and "low e-mail engagement" in weekly.tagline
    once = build_personas([facts(interval=None)])[0]
    assert "They have bought once or twice" in once.description and "buy" not in once.tagline
