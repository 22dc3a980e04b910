"""Recovery mode: the single population's known parameters come back from the CLV fit, and the
planted segments of the default population keep their own BTYD parameters."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import ibis
import pandas as pd
import pytest
from typer.testing import CliRunner

from micromarketing.cli.datasets import app
from micromarketing.datasets.generator import SEGMENT_SPECS, generate, population_params
from micromarketing.errors import DataError
from micromarketing.profiles.clv import clv_summary, fit_summary

AS_OF = date(2026, 7, 1)  # the day after the reference date: every generated order counts


def _summary(out: Path, customers: pd.Index | None = None):
    tx = pd.read_csv(out / "transactions.csv", usecols=["customer_id", "ordered_at", "amount"])
    if customers is not None:
        tx = tx[tx["customer_id"].isin(customers)]
    tx["ordered_at"] = pd.to_datetime(tx["ordered_at"], utc=True)
    return clv_summary(ibis.memtable(tx), AS_OF, unit_days=7.0)


@pytest.fixture(scope="module")
def single_20k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single")
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--out",
            str(out),
            "--customers",
            "20000",
            "--seed",
            "11",
            "--population",
            "single",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_single_population_writes_its_parameters_in_the_units_of_clv_fit(single_20k: Path) -> None:
    params = json.loads((single_20k / "params.json").read_text())
    assert set(params) == {"bgnbd", "gamma_gamma"}
    assert set(params["bgnbd"]) == {"r", "alpha", "a", "b"} and set(params["gamma_gamma"]) == {
        "p",
        "q",
        "gamma",
    }
    assert params["bgnbd"]["a"] == 0.793 and params["bgnbd"]["b"] == 2.426  # CDNOW's dropout
    assert set(pd.read_csv(single_20k / "truth.csv")["segment"]) == {"single"}
    first = pd.read_csv(single_20k / "transactions.csv", usecols=["customer_id", "ordered_at"])
    first = pd.to_datetime(first.groupby("customer_id")["ordered_at"].min(), utc=True)
    assert (first.max() - first.min()).days > 900  # acquisition is staggered over ~3 years


@pytest.mark.slow
def test_fit_recovers_every_parameter_of_the_single_population(single_20k: Path) -> None:
    """20,000 customers: within 25 % (coverage over 20 seeds: benchmarks/clv_recovery_bench.py)."""
    true = json.loads((single_20k / "params.json").read_text())
    fit = fit_summary(_summary(single_20k), as_of=AS_OF)
    assert fit.converged and fit.spend_converged and fit.limit is None
    for name, value in true["bgnbd"].items():
        assert fit.params[name] == pytest.approx(value, rel=0.25), name
        assert abs(fit.params[name] - value) < 4 * fit.std_errors[name], name
    for name, value in true["gamma_gamma"].items():
        assert fit.spend_params[name] == pytest.approx(value, rel=0.25), name
        assert abs(fit.spend_params[name] - value) < 4 * fit.spend_std_errors[name], name


def test_default_population_has_no_params_file_and_unknown_population_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "params.json").write_text("{}")  # left by an earlier single-population run
    generate(tmp_path, customers=50, seed=1)
    assert not (tmp_path / "params.json").exists()
    with pytest.raises(DataError, match="unknown population 'mixed'"):
        generate(tmp_path, customers=50, population="mixed")  # type: ignore[arg-type]
    bad = CliRunner().invoke(app, ["generate", "--out", str(tmp_path), "--population", "mixed"])
    assert bad.exit_code == 2


# Segments whose whole history is one BG/NBD + Gamma-Gamma process with enough purchases to
# identify it (lapsed_high_value is forced to stop, new_high_potential has only days of history).
RECOVERABLE = ("mainstream", "urban_young_eco", "local_store_regulars", "bargain_hunters")


@pytest.mark.slow
def test_planted_segments_keep_their_own_btyd_parameters(tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tmp_path_factory.mktemp("segments")
    generate(out, customers=24_000, seed=3)
    truth = pd.read_csv(out / "truth.csv").set_index("customer_id")["segment"]
    specs = {s.name: s for s in SEGMENT_SPECS}
    for name in RECOVERABLE:
        fit = fit_summary(_summary(out, truth.index[truth == name]), as_of=AS_OF)
        true = population_params(specs[name])
        assert fit.converged and fit.spend_converged, name
        for k in ("r", "alpha"):
            assert fit.params[k] == pytest.approx(true["bgnbd"][k], rel=0.25), (name, k)
        for k in ("p", "q", "gamma"):
            assert fit.spend_params[k] == pytest.approx(true["gamma_gamma"][k], rel=0.25), (name, k)
