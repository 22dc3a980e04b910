"""measure/stats.py against GrowthBook's gbstats 0.8.0, to 1e-6.

The answers were computed by gbstats in a venv of its own (it needs numpy < 2 and pandas < 2):
see ``oracle/make_gbstats_fixtures.py`` for how to regenerate ``oracle/gbstats_fixtures.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from micromarketing.measure import stats
from micromarketing.measure.srm import check_srm

FIXTURES = json.loads((Path(__file__).parent / "oracle" / "gbstats_fixtures.json").read_text())
TOL = 1e-6


def _moments(d: dict[str, float]) -> stats.Moments:
    return stats.Moments(int(d["n"]), d["sum"], d["sum_squares"])


def _covariate(d: dict[str, Any]) -> stats.CovariateMoments:
    return stats.CovariateMoments(_moments(d["post"]), _moments(d["pre"]), d["cross"])


def _same(effect: stats.Effect, interval: stats.Interval, p_value: float, expected: dict[str, Any]) -> None:
    assert expected["error"] is None
    assert effect.estimate == pytest.approx(expected["expected"], abs=TOL, rel=TOL)
    assert effect.std_error == pytest.approx(expected["stddev"], abs=TOL, rel=TOL)
    assert (interval.low, interval.high) == pytest.approx(tuple(expected["ci"]), abs=TOL, rel=TOL)
    assert p_value == pytest.approx(expected["p_value"], abs=TOL)


def test_fixtures_come_from_gbstats_0_8_0() -> None:
    assert FIXTURES["gbstats_version"] == "0.8.0"


def test_notes_example_is_reproduced() -> None:
    """The example verified in ../shared/NOTES.md: relative 0.70732 (−0.03526, 1.44989), p 0.06191."""
    case = FIXTURES["means"][0]
    result = stats.welch_test(_moments(case["treatment"]), _moments(case["control"]))
    assert result.relative.estimate == pytest.approx(0.70732, abs=1e-5)
    assert (result.relative.interval.low, result.relative.interval.high) == pytest.approx(
        (-0.03526, 1.44989), abs=1e-5
    )
    assert result.relative.p_value == pytest.approx(0.06191, abs=1e-5)
    assert result.absolute.estimate == pytest.approx(0.29)
    assert result.absolute.p_value == pytest.approx(0.02016, abs=1e-5)


@pytest.mark.parametrize("case", FIXTURES["means"], ids=lambda c: f"n={c['control']['n']}")
def test_welch_matches_gbstats(case: dict[str, Any]) -> None:
    result = stats.welch_test(_moments(case["treatment"]), _moments(case["control"]))
    for kind in ("relative", "absolute"):
        effect = getattr(result, kind)
        _same(effect, effect.interval, effect.p_value, case[kind])


@pytest.mark.parametrize("case", FIXTURES["proportions"], ids=lambda c: f"n={c['control']['n']}")
def test_proportion_relative_lift_matches_gbstats(case: dict[str, Any]) -> None:
    """gbstats' relative lift of two proportions; its absolute difference is a Wald interval,
    ours is Newcombe's (checked against statsmodels), so only the estimate and its standard
    error are compared there."""
    c, t = case["control"], case["treatment"]
    result = stats.two_proportion_test(int(t["sum"]), t["n"], int(c["sum"]), c["n"])
    _same(result.relative, result.relative.interval, result.relative.p_value, case["relative"])
    assert result.absolute.estimate == pytest.approx(case["absolute"]["expected"], abs=TOL)
    assert result.absolute.std_error == pytest.approx(case["absolute"]["stddev"], abs=TOL)


@pytest.mark.parametrize("case", FIXTURES["cuped"], ids=lambda c: f"n={c['control']['post']['n']}")
def test_cuped_matches_gbstats_regression_adjustment(case: dict[str, Any]) -> None:
    treatment, control = _covariate(case["treatment"]), _covariate(case["control"])
    assert stats.cuped_theta(treatment, control) == pytest.approx(case["theta"], abs=TOL, rel=TOL)
    result = stats.cuped_test(treatment, control)
    assert result.variance_reduction > 0
    for kind in ("relative", "absolute"):
        effect = getattr(result, kind)
        _same(effect, effect.interval, effect.p_value, case[kind])


@pytest.mark.parametrize("case", FIXTURES["sequential"], ids=lambda c: f"n={c['control']['n']}-{c['tuning']}")
def test_confidence_sequence_matches_gbstats_sequential(case: dict[str, Any]) -> None:
    treatment, control = _moments(case["treatment"]), _moments(case["control"])
    result = stats.welch_test(treatment, control)
    n = treatment.n + control.n
    for kind in ("relative", "absolute"):
        effect = getattr(result, kind)
        interval = stats.confidence_sequence(effect, n, tuning=case["tuning"])
        p_value = stats.sequential_p_value(effect, n, tuning=case["tuning"])
        _same(effect, interval, p_value, case[kind])


@pytest.mark.parametrize("case", FIXTURES["srm"], ids=lambda c: str(c["users"]))
def test_srm_matches_gbstats(case: dict[str, Any]) -> None:
    arms = [f"arm{i}" for i in range(len(case["users"]))]
    observed = dict(zip(arms, case["users"], strict=True))
    result = check_srm(observed, dict(zip(arms, case["weights"], strict=True)))
    assert result.p_value == pytest.approx(case["p_value"], abs=TOL)
