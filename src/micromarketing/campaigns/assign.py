"""Deterministic assignment of campaign members to control or a variant, and the global holdout.

A member's arm is a pure function of (campaign name, customer id): the first 8 bytes of
BLAKE2b(campaign ‖ 0x1f ‖ customer) read as a number ``u`` in [0, 1).  ``u < control_share`` is
control; the rest of [control_share, 1) is cut into the variants by their shares.  No global
random state: the same campaign assigns the same person to the same arm on every run, machine
and engine, and two campaigns draw independently (different names, unrelated hashes).

The global holdout uses the same construction on (period number, customer id) with its own
prefix: a workspace-wide share of customers that no marketing campaign contacts during one
period of ``holdout_period_days`` days, re-drawn when the period changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, date, datetime

import numpy as np

from micromarketing.config import CampaignSettings

CONTROL = "control"
GLOBAL_HOLDOUT = "global_holdout"
_SCALE = float(2**64)
_EPOCH = date(1970, 1, 1)


def unit_hash(salt: str, key: str) -> float:
    """A uniform number in [0, 1) determined by ``salt`` and ``key`` alone."""
    digest = hashlib.blake2b(f"{salt}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def unit_hashes(salt: str, keys: Sequence[str]) -> np.ndarray:
    """:func:`unit_hash` of every key (vectorised over the output; hashing stays per key)."""
    prefix = f"{salt}\x1f".encode()
    blake = hashlib.blake2b
    raw = b"".join(blake(prefix + k.encode(), digest_size=8).digest() for k in keys)
    return np.frombuffer(raw, dtype=">u8").astype(np.float64) / _SCALE


def assign_arms(
    campaign: str, customer_ids: Sequence[str], control_share: float, variants: Sequence[tuple[str, float]]
) -> np.ndarray:
    """The arm (``"control"`` or a variant name) of each customer, as an object array.

    ``variants`` are (name, share) pairs whose shares sum to 1; they split the treated members.
    """
    if not variants:
        raise ValueError("at least one variant is needed")
    u = unit_hashes(f"campaign:{campaign}", customer_ids)
    names = np.array([CONTROL, *(name for name, _ in variants)], dtype=object)
    shares = np.array([share for _, share in variants], dtype=float)
    bounds = control_share + (1.0 - control_share) * np.cumsum(shares) / shares.sum()
    bounds[-1] = np.inf  # rounding never leaves a member without an arm
    index = np.where(u < control_share, 0, 1 + np.searchsorted(bounds, u, side="right"))
    return names[np.minimum(index, len(names) - 1)]


def holdout_period(day: date, period_days: int) -> int:
    """The number of the holdout period ``day`` falls in (periods start on 1970-01-01)."""
    return (day - _EPOCH).days // period_days


def in_global_holdout(
    customer_ids: Sequence[str], settings: CampaignSettings, when: datetime | None = None
) -> np.ndarray:
    """Boolean mask: which customers are in the global holdout during ``when``'s period."""
    if settings.global_holdout_share <= 0:
        return np.zeros(len(customer_ids), dtype=bool)
    day = (when or datetime.now(UTC)).astimezone(UTC).date()
    period = holdout_period(day, settings.holdout_period_days)
    return unit_hashes(f"global-holdout:{period}", customer_ids) < settings.global_holdout_share
