"""Simulated responses to a campaign, from a known true conversion rate per segment and arm.

The demo (and the measurement tests) need outcomes whose truth is known, so that the measured
lifts and their intervals can be checked against it: each assigned customer converts with the
probability of their (segment, arm) — the control arm's rate is the segment's baseline, a
variant's rate is the baseline plus its true uplift *for the members who received the message*
(a member the policy skipped converts at the baseline) — at a uniformly random time inside the
attribution window after assignment, with an order value drawn from a gamma distribution around
the segment's average order value.  Converters are written as transaction rows that ``ingest``
accepts.  Deterministic for a seed (numpy ``Generator``; no global random state).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TrueResponse:
    """The truth of one segment: its baseline conversion rate and each variant's absolute uplift."""

    baseline: float
    uplift: Mapping[str, float]
    order_value: float = 60.0

    def rate(self, arm: str) -> float:
        """The true conversion probability of ``arm`` ("control" or a variant's name)."""
        return self.baseline if arm == "control" else self.baseline + self.uplift.get(arm, 0.0)


def simulate_responses(
    assignments: pd.DataFrame,
    truth: Mapping[str, TrueResponse],
    *,
    window_days: int,
    currency: str,
    seed: int,
    order_prefix: str = "SIM",
) -> pd.DataFrame:
    """Transactions of the customers who convert, one order each.

    ``assignments`` has ``customer_id``, ``segment``, ``arm`` and ``assigned_at`` (timezone-aware),
    and optionally ``delivered`` (bool: only those get a variant's uplift; default all); segments
    missing from ``truth`` do not respond.  Returns the columns of the ``transactions``
    table (``order_id``, ``line_no``, ``customer_id``, ``ordered_at``, ``amount``, ``currency``,
    ``channel``)."""
    rng = np.random.default_rng(seed)
    frame = assignments.sort_values("customer_id").reset_index(drop=True)
    known = frame["segment"].isin(list(truth))
    frame = frame[known].reset_index(drop=True)
    reached = frame["delivered"].to_numpy(bool) if "delivered" in frame else np.ones(len(frame), bool)
    rates = np.array(
        [
            truth[s].rate(a if got else "control")
            for s, a, got in zip(frame["segment"], frame["arm"], reached, strict=True)
        ]
    )
    if np.any((rates < 0) | (rates > 1)):
        raise ValueError("a true conversion rate is outside [0, 1]")
    converts = rng.random(len(frame)) < rates
    buyers = frame[converts].reset_index(drop=True)
    values = np.array([truth[s].order_value for s in buyers["segment"]])
    shape = 4.0  # coefficient of variation 0.5
    amounts = np.round(rng.gamma(shape, values / shape), 2)
    # strictly inside the window: attribution windows are half-open [assigned, assigned + days)
    offsets = pd.to_timedelta(rng.uniform(0.01, window_days - 0.01, len(buyers)), unit="D")
    assigned = pd.to_datetime(buyers["assigned_at"], utc=True)
    return pd.DataFrame(
        {
            "order_id": [f"{order_prefix}{i:07d}" for i in range(len(buyers))],
            "line_no": 1,
            "customer_id": buyers["customer_id"].to_numpy(),
            "ordered_at": (assigned + offsets).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "amount": amounts,
            "currency": currency,
            "channel": "online",
        }
    )
