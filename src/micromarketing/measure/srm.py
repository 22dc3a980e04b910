"""Sample-ratio mismatch: did the arms get the shares the campaign planned?

A mismatch (a broken assignment, a policy that drops one arm's members, a logging gap) biases
every lift computed from those arms, so the check is shown before any lift.  It is Pearson's
chi-square goodness-of-fit test of the observed arm sizes against the planned shares, flagged
below p = 0.001 (the threshold experimentation platforms use: rare by chance, loud when real).
"""

from __future__ import annotations

from collections.abc import Mapping

from scipy import stats as sps

from micromarketing.measure.results import Srm

SRM_THRESHOLD = 0.001


def check_srm(observed: Mapping[str, int], planned_shares: Mapping[str, float]) -> Srm:
    """Chi-square test of the arm counts ``observed`` against ``planned_shares`` (any positive scale).

    Arms with a planned share of zero are left out of the test (as gbstats does); with fewer than
    two arms left, or nobody observed, there is nothing to test and the p-value is 1."""
    arms = [arm for arm in planned_shares if planned_shares[arm] > 0]
    total_share = sum(planned_shares[arm] for arm in arms)
    total = sum(int(observed.get(arm, 0)) for arm in arms)
    counts = {arm: int(observed.get(arm, 0)) for arm in planned_shares}
    expected = {
        arm: (planned_shares[arm] / total_share * total if arm in arms and total_share > 0 else 0.0)
        for arm in planned_shares
    }
    if len(arms) < 2 or total == 0:
        why = "nobody observed" if arms and total == 0 else "fewer than two arms have a planned share"
        return Srm(
            observed=counts,
            expected=expected,
            statistic=0.0,
            p_value=1.0,
            flagged=False,
            note=f"not tested: {why}",
        )
    statistic, p_value = sps.chisquare([counts[a] for a in arms], [expected[a] for a in arms])
    p = float(p_value)
    return Srm(
        observed=counts, expected=expected, statistic=float(statistic), p_value=p, flagged=p < SRM_THRESHOLD
    )
