"""Regenerate ``gbstats_fixtures.json``: GrowthBook's gbstats 0.8.0 on a fixed set of inputs.

gbstats 0.8.0 needs pandas < 2 and numpy < 2, which break the project's environment, so it runs
in a venv of its own and its answers are committed; ``test_stats_gbstats.py`` compares ours to
them.  To regenerate::

    python3 -m venv .venv-oracle
    .venv-oracle/bin/pip install gbstats==0.8.0
    .venv-oracle/bin/python tests/measure/oracle/make_gbstats_fixtures.py

The inputs are sufficient statistics (n, sums, sums of squares, cross products) drawn from a
seeded generator and written into the file beside the answers, so the test needs no generator.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (
    ProportionStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
    compute_theta,
)
from gbstats.utils import check_srm

OUT = Path(__file__).with_name("gbstats_fixtures.json")
DIFFERENCES = ("relative", "absolute")


def _result(test: Any) -> dict[str, Any]:
    result = test.compute_result()
    return {"expected": result.expected, "ci": list(result.ci), "p_value": result.p_value,
            "stddev": result.uplift.stddev, "error": result.error_message}


def _moments(values: np.ndarray) -> dict[str, float]:
    return {"n": int(values.size), "sum": float(values.sum()), "sum_squares": float(np.square(values).sum())}


def _revenue(rng: np.random.Generator, n: int, buy: float, scale: float) -> np.ndarray:
    return np.where(rng.random(n) < buy, rng.lognormal(3, 1, n) * scale, 0.0)


def mean_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    inputs = [  # the verified example in NOTES.md first
        ({"n": 3407, "sum": 1396.87, "sum_squares": 52377.9767},
         {"n": 3461, "sum": 2422.7, "sum_squares": 134698.29}),
    ]
    for n_a, n_b, lift in [(200, 210, 1.0), (1500, 1480, 1.1), (40, 35, 1.5), (10_000, 10_050, 1.02)]:
        inputs.append((_moments(_revenue(rng, n_a, 0.2, 1.0)), _moments(_revenue(rng, n_b, 0.2, lift))))
    cases = []
    for control, treatment in inputs:
        a, b = SampleMeanStatistic(**control), SampleMeanStatistic(**treatment)
        cases.append({
            "control": control, "treatment": treatment,
            **{d: _result(TwoSidedTTest(a, b, FrequentistConfig(difference_type=d))) for d in DIFFERENCES},
        })
    return cases


def proportion_cases() -> list[dict[str, Any]]:
    cases = []
    for n_a, x_a, n_b, x_b in [(1000, 100, 1000, 130), (5000, 250, 5100, 240), (120, 9, 130, 17),
                               (50_000, 1200, 50_000, 1350)]:
        a, b = ProportionStatistic(n=n_a, sum=x_a), ProportionStatistic(n=n_b, sum=x_b)
        cases.append({
            "control": {"n": n_a, "sum": x_a}, "treatment": {"n": n_b, "sum": x_b},
            **{d: _result(TwoSidedTTest(a, b, FrequentistConfig(difference_type=d))) for d in DIFFERENCES},
        })
    return cases


def cuped_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    cases = []
    for n, effect, slope in [(800, 3.0, 0.8), (3000, 1.0, 0.5), (150, 5.0, 1.2), (20_000, 0.5, 0.3)]:
        arms = {}
        for name, shift in (("control", 0.0), ("treatment", effect)):
            pre = _revenue(rng, n, 0.4, 1.0)
            post = slope * pre + _revenue(rng, n, 0.2, 1.0) + shift * (rng.random(n) < 0.5)
            arms[name] = {"post": _moments(post), "pre": _moments(pre), "cross": float((pre * post).sum())}
        stat = {
            name: RegressionAdjustedStatistic(
                n=arm["post"]["n"], post_statistic=SampleMeanStatistic(**arm["post"]),
                pre_statistic=SampleMeanStatistic(**arm["pre"]),
                post_pre_sum_of_products=arm["cross"], theta=0,
            )
            for name, arm in arms.items()
        }
        theta = compute_theta(stat["control"], stat["treatment"])
        for s in stat.values():
            s.theta = theta
        results = {
            d: _result(TwoSidedTTest(stat["control"], stat["treatment"], FrequentistConfig(difference_type=d)))  # noqa: E501
            for d in DIFFERENCES
        }
        cases.append({**arms, "theta": theta, **results})
    return cases


def sequential_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    cases = []
    for n_a, n_b, lift, tuning in [(500, 520, 1.2, 5000), (4000, 4100, 1.05, 5000), (4000, 4100, 1.05, 500),
                                   (30_000, 29_800, 1.01, 20_000)]:
        control, treatment = _moments(_revenue(rng, n_a, 0.2, 1.0)), _moments(_revenue(rng, n_b, 0.2, lift))
        a, b = SampleMeanStatistic(**control), SampleMeanStatistic(**treatment)
        cases.append({
            "control": control, "treatment": treatment, "tuning": tuning,
            **{d: _result(SequentialTwoSidedTTest(a, b, SequentialConfig(difference_type=d,
                                                                          sequential_tuning_parameter=tuning)))
               for d in DIFFERENCES},
        })
    return cases


def srm_cases() -> list[dict[str, Any]]:
    inputs = [([1010, 8990], [0.1, 0.9]), ([1300, 8700], [0.1, 0.9]), ([5000, 5100], [0.5, 0.5]),
              ([100, 460, 440], [0.1, 0.45, 0.45]), ([100, 300, 620], [1, 3, 6]), ([0, 0], [0.5, 0.5])]
    return [{"users": users, "weights": weights, "p_value": float(check_srm(users, weights))}
            for users, weights in inputs]


def main() -> None:
    rng = np.random.default_rng(20261203)
    fixtures = {
        "gbstats_version": version("gbstats"),
        "means": mean_cases(rng),
        "proportions": proportion_cases(),
        "cuped": cuped_cases(rng),
        "sequential": sequential_cases(rng),
        "srm": srm_cases(),
    }
    OUT.write_text(json.dumps(fixtures, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
