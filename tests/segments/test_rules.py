"""Rule compilation: every rule of the population selects exactly the hand-checked members."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from mm_segments_population import AS_OF, RULE_CASES

from micromarketing.errors import RuleError
from micromarketing.segments.rules import Catalog, compile_rule


def members(ws, rule, **kw):
    compiled = compile_rule(rule, Catalog(ws.warehouse), **kw)
    return set(compiled.members().to_pyarrow().column("customer_id").to_pylist())


@pytest.mark.parametrize(("rule", "expected"), RULE_CASES, ids=[r for r, _ in RULE_CASES])
def test_rule_selects_expected_members(shared_ws, rule, expected):
    assert members(shared_ws, rule) == expected


def test_default_as_of_is_the_profiles_date(shared_ws):
    assert compile_rule("frequency > 1", Catalog(shared_ws.warehouse)).as_of == AS_OF


def test_behaviour_windows_follow_the_as_of_date(shared_ws):
    # 60 days earlier C10's running order (60 days before AS_OF) is in the future: not counted;
    # C05's order (200 days before) is 140 days old, outside 90 days.
    earlier = date(2024, 5, 2)
    assert members(shared_ws, "bought(category='running', within_days=90)", as_of=earlier) == set()
    assert members(shared_ws, "bought(category='running', within_days=150)", as_of=earlier) == {"C05"}
    compiled = compile_rule("frequency > 1", Catalog(shared_ws.warehouse), as_of=earlier)
    assert compiled.warnings and "profile fields are as of 2024-07-01" in compiled.warnings[0]


def test_quotes_in_values_are_data_not_sql(shared_ws):
    assert members(shared_ws, "city = 'Paris'' or ''1''=''1'") == set()
    assert members(shared_ws, "city in ('x\\' or 1=1 --')") == set()


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("cltv > 3", "line 1, col 1: unknown field 'cltv'; did you mean 'clv'?"),
        ("frequency >= 3 and citty = 'Lyon'", "line 1, col 20: unknown field 'citty'; did you mean 'city'?"),
        (
            "frequency >= 3 and\n  recncy_days < 4",
            "line 2, col 3: unknown field 'recncy_days'; did you mean 'recency_days'?",
        ),
        ("city > 3", "line 1, col 6: cannot compare text (city) with a number (3)"),
        ("frequency", "line 1, col 1: a rule must be a condition"),
        (
            "bought(categry='running')",
            "line 1, col 8: bought() has no argument 'categry'; did you mean 'category'?",
        ),
        ("events(type='email_clik') > 1", "unknown event type 'email_clik'; did you mean 'email_click'?"),
        ("within_km(store('S013'), 5)", "line 1, col 17: unknown store 'S013'; did you mean 'S012'?"),
        ("within_km(95, 2, 5)", "latitude 95 is outside -90..90"),
        ("bought(within_days=0)", "within_days must be a whole number of days"),
        ("in_segment('nope')", "unknown segment 'nope'"),
        ("frequency = null", "write 'is null'"),
        ("last_order_at > '2024-13-01'", "expected a date written YYYY-MM-DD but found '2024-13-01'"),
        ("frobnicate(1) > 2", "unknown function 'frobnicate'"),
        ("days_since > 3", "'days_since' is a function"),
        ("frequency > 3 city = 'x'", "did you forget 'and' / 'or'?"),
        ("1 < frequency < 5", "conditions cannot be chained"),
        ("city in ('a', frequency)", "must be values"),
    ],
)
def test_errors_name_position_and_expectation(shared_ws, rule, message):
    with pytest.raises(RuleError) as info:
        compile_rule(rule, Catalog(shared_ws.warehouse))
    assert message in str(info.value)


def test_clv_fields_before_a_clv_fit_get_a_precise_message(ws):
    profiles = ws.table("profiles").drop("clv").to_pandas()
    ws.warehouse.create_from("profiles", profiles)
    with pytest.raises(
        RuleError, match="'clv' is not available yet: it appears once a CLV model is fitted"
    ):
        compile_rule("clv > 3", Catalog(ws.warehouse))


def test_the_old_clv_name_still_works_with_a_warning(shared_ws):
    old = compile_rule("clv_12m > 100 and CLV_12M < 10000", Catalog(shared_ws.warehouse))
    new = members(shared_ws, "clv > 100 and clv < 10000")
    assert set(old.members().to_pyarrow().column("customer_id").to_pylist()) == new and new
    assert old.warnings == ["field 'clv_12m' is deprecated: use 'clv' (line 1, column 1)",
                            "field 'CLV_12M' is deprecated: use 'clv' (line 1, column 19)"]
    assert list(old.fields) == ["clv"]


def test_rules_work_before_profiles_exist(ws):
    ws.warehouse.raw_sql("DROP TABLE profiles")
    assert members(ws, "city = 'Lyon'", as_of=AS_OF) == {"C03", "C04"}
    with pytest.raises(
        RuleError, match="field 'recency_days' is not available yet: run `micromarketing profile`"
    ):
        compile_rule("recency_days < 3", Catalog(ws.warehouse), as_of=AS_OF)


def test_distance_km_matches_a_known_distance(shared_ws):
    # Paris Bastille store to Lyon Part-Dieu: ~392 km great-circle.
    compiled = compile_rule("distance_km(store('S001')) between 380 and 400", Catalog(shared_ws.warehouse))
    got = set(compiled.members().to_pyarrow().column("customer_id").to_pylist())
    assert got == {"C03", "C04"}


def test_within_km_box_never_cuts_the_circle(ws):
    # N1 is the easternmost point of the 500 km circle around (48.85, 2.35) (where a naive
    # bounding box is tightest); N2/N3 straddle the antimeridian.
    frame = ws.table("customers").to_pandas()
    extra = frame.iloc[:3].copy()
    extra["customer_id"] = ["N1", "N2", "N3"]
    extra[["lat", "lon"]] = [[49.0528, 9.1926], [-16.5, 179.9], [-16.5, -179.9]]

    ws.warehouse.create_from("customers", pd.concat([frame, extra]))
    profiles = ws.table("profiles").to_pandas()
    more = profiles.iloc[:3].copy()
    more["customer_id"] = ["N1", "N2", "N3"]
    ws.warehouse.create_from("profiles", pd.concat([profiles, more]))

    assert "N1" in members(ws, "within_km(48.85, 2.35, 500.1)")  # 499.997 km away
    assert "N1" not in members(ws, "within_km(48.85, 2.35, 499.9)")
    # Fiji: 179.9 and -179.9 are ~21 km apart although their longitudes differ by 359.8 degrees.
    assert {"N2", "N3"} <= members(ws, "within_km(-16.5, 179.95, 25)")
