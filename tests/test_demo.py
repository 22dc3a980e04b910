"""The main job runs the whole loop end to end (small size) and each step produces real output."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from micromarketing.cli.main import app
from micromarketing.demo import DEMO_SEGMENTS


@pytest.mark.slow
def test_demo_runs_the_whole_loop(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--customers", "1500", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)

    accepted: dict[str, int] = {}
    for r in report["ingested"]:  # the data files first; the simulated responses come last
        accepted.setdefault(r["kind"], r["accepted"])
    assert accepted["customers"] == 1500 and accepted["transactions"] > 10_000
    assert all(r["rejected"] == 0 for r in report["ingested"])  # generated data is valid

    assert report["clv"]["converged"] and report["clv"]["n_customers"] == 1500
    assert report["profile"]["customers"] == 1500
    tiers = {t["value_tier"]: t for t in report["value_tiers"]}
    assert tiers["top_1"]["avg_clv"] > tiers["top_10"]["avg_clv"] > tiers["rest"]["avg_clv"] > 0

    assert [s["segment"] for s in report["rule_segments"]] == [name for name, _, _ in DEMO_SEGMENTS]
    assert all(s["size"] > 0 for s in report["rule_segments"])
    discovered = report["discovered"]
    assert discovered["k"] >= 4
    assert sum(s["size"] for s in discovered["segments"]) == discovered["customers"]
    # 2b. Value per discovered segment: one group per segment, the very members the segments hold
    # (the re-run that refreshes the personas found the same segments), small ones on the pooled fit.
    fit = report["clv"]
    assert fit["by"] == "segments" and fit["converged"]
    groups = {g["group"]: g for g in fit["groups"]}
    assert {name: g["customers"] for name, g in groups.items()} == {
        s["name"]: s["size"] for s in discovered["segments"]
    }
    for g in groups.values():
        assert g["uses"] == ("own" if g["customers"] >= fit["min_group_size"] else "pooled")
    assert report["pooled_clv"]["n_customers"] == 1500 and "groups" not in report["pooled_clv"]

    assert report["recommendations"] and report["offers"]
    check = report["template_check"]
    assert check["rendered"] == check["recipients"] > 0 and check["failures"] == []

    # 5. The campaign: control held out, every queued message delivered to the SMTP server once,
    # the contact policy's skips counted with their reasons.
    run, delivery = report["campaign"], report["delivery"]
    assert run["control"] > 0 and run["messages_inserted"] > 0
    assert delivery["sent"] == report["smtp_received"] > 0 and delivery["failed"] == 0
    assert sum(report["skipped_reasons"].values()) == run["skipped"] + delivery["skipped"]
    # 6. Measured against the simulated truth: one comparison per segment and variant, SRM
    # checked, and the 95% intervals cover the true lifts at about the nominal rate.
    measurement = report["measurement"]
    true = {(t["segment"], t["variant"]): t["lift"] for t in report["true_lifts"]}
    compared = [c for c in measurement["comparisons"] if (c["segment"], c["treatment"]) in true]
    assert len(compared) == len(true) >= 2 * discovered["k"] - 2
    assert all(c["srm"]["p_value"] is not None for c in compared)
    covered = sum(
        c["conversion"]["absolute_interval"]["low"] <= true[(c["segment"], c["treatment"])]
        <= c["conversion"]["absolute_interval"]["high"]
        for c in compared
    )
    assert covered >= 0.8 * len(compared), (covered, len(compared))
    # 7. The budget is reallocated over every arm, and the report is written beside the workspace.
    allocation = report["allocation"]
    assert sum(a["share"] for a in allocation["arms"]) == pytest.approx(1.0)
    assert report["report"] == str(tmp_path / "report.html") and (tmp_path / "report.html").stat().st_size > 0

    # Running it again starts from a fresh workspace and gives the same figures.
    again = json.loads(
        CliRunner().invoke(app, ["demo", "--customers", "1500", "--out", str(tmp_path), "--json"]).stdout
    )
    for first, second in zip(report["rfm_segments"], again["rfm_segments"], strict=True):
        assert first["customers"] == second["customers"]
        assert first["revenue"] == pytest.approx(second["revenue"])  # summation order may differ
    assert again["delivery"]["sent"] == delivery["sent"] and again["responses"] == report["responses"]
