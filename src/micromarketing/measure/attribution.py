"""Attribution: which members of a campaign were touched when, and which outcomes count for it.

A campaign's members are its ``campaign_assignments`` rows (control, holdout and every variant)
and its messages are its ``outbox`` rows (test sends excluded).  Each member gets a *touch time*:
when its message was sent, or its assignment time when it was not sent (control members, the
global holdout, messages skipped by the contact policy — intention to treat, so the arms stay
comparable).  An order counts for the campaign when it falls inside ``attribution_days`` after
the touch; with ``last_touch`` attribution (the default) it stops counting at the member's next
message from *another* campaign, which then takes the credit.  Control members get exactly the
same window from their assignment, so treatment and control are compared like for like.

The result is one small frame per member (windows, delivery, cost drivers); the outcomes are
then joined in the warehouse by :mod:`micromarketing.measure.kpis`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import pandas as pd
from sqlalchemy import String, select, type_coerce

from micromarketing.errors import DataError, NotFoundError
from micromarketing.store.context import StoreContext
from micromarketing.store.models import Assignment, Campaign, Offer, OutboxMessage

CONTROL = "control"
HOLDOUT = "holdout"  # a member of the workspace-wide global holdout
NOT_TREATED = (CONTROL, HOLDOUT)
Attribution = Literal["last_touch", "any_touch"]


@dataclass(frozen=True)
class CampaignMembers:
    """A campaign's row and one row per member with its attribution window and cost drivers.

    ``members`` columns: customer_id, segment, arm, channel, delivered (0/1), touch_at,
    attribution_end (the end of the window, cut at the next other campaign's message under last
    touch), retention_end, pre_start, message_cost, offer_cost (paid if the member converts)."""

    campaign: Campaign
    members: pd.DataFrame
    planned_shares: dict[str, dict[str, float]]  # segment -> arm -> planned share of its members


def campaign_members(
    ctx: StoreContext,
    name: str,
    *,
    attribution: Attribution,
    retention_days: int,
    pre_period_days: int,
    message_cost: dict[str, float],
) -> CampaignMembers:
    """The members of campaign ``name`` with their windows (see the module docstring)."""
    with ctx.ops.session() as session:
        campaign = session.scalars(select(Campaign).where(Campaign.name == name)).one_or_none()
        if campaign is None:
            known = list(session.scalars(select(Campaign.name).order_by(Campaign.name)).all())
            close = difflib.get_close_matches(name, known, n=1)
            hint = (f" (did you mean {close[0]!r}?)" if close else "") + (
                f"; campaigns: {', '.join(known)}" if known else "; no campaign has been run yet"
            )
            raise NotFoundError(f"campaign {name!r} does not exist{hint}")
        assignments = pd.DataFrame(
            session.connection().execute(
                select(
                    Assignment.customer_id,
                    Assignment.segment,
                    Assignment.arm,
                    Assignment.channel,
                    Assignment.offer_code,
                    _raw(Assignment.assigned_at),
                ).where(Assignment.campaign_id == campaign.id)
            ).all(),
            columns=["customer_id", "segment", "arm", "channel", "offer_code", "assigned_at"],
        )
        messages = pd.DataFrame(
            session.connection().execute(
                select(
                    OutboxMessage.customer_id,
                    OutboxMessage.channel,
                    OutboxMessage.state,
                    _raw(OutboxMessage.sent_at),
                ).where(OutboxMessage.campaign_id == campaign.id, OutboxMessage.is_test.is_(False))
            ).all(),
            columns=["customer_id", "message_channel", "state", "sent_at"],
        )
        offer_costs = dict(session.execute(select(Offer.name, Offer.cost)).all())
        other_touches = _other_touches(session, campaign.id) if attribution == "last_touch" else None
    if assignments.empty:
        raise DataError(f"campaign {name!r} has no assignments yet (run it first)")

    members = assignments.merge(_first_sent(messages), on="customer_id", how="left")
    members["assigned_at"] = _utc(members["assigned_at"])
    members["delivered"] = members["sent_at"].notna().astype("int64")
    members["channel"] = members["channel"].fillna(members["message_channel"])
    members["touch_at"] = members["sent_at"].where(members["sent_at"].notna(), members["assigned_at"])
    members["attribution_end"] = members["touch_at"] + timedelta(days=campaign.attribution_days)
    if other_touches is not None and not other_touches.empty:
        members["attribution_end"] = _cut_at_next_touch(members, other_touches)
    members["retention_end"] = members["touch_at"] + timedelta(days=retention_days)
    members["pre_start"] = members["touch_at"] - timedelta(days=pre_period_days)
    channel_costs = {c: _message_cost(campaign.spec, c, message_cost) for c in members["channel"].unique()}
    members["message_cost"] = members["delivered"] * members["channel"].map(channel_costs).astype(float)
    treated = ~members["arm"].isin(NOT_TREATED)
    members["offer_cost"] = (
        members["offer_code"].map(offer_costs).fillna(0.0).astype(float).where(treated, 0.0)
    )
    columns = [
        "customer_id",
        "segment",
        "arm",
        "channel",
        "delivered",
        "touch_at",
        "attribution_end",
        "retention_end",
        "pre_start",
        "message_cost",
        "offer_cost",
    ]
    return CampaignMembers(campaign, members[columns], planned_shares(campaign, assignments))


def planned_shares(campaign: Campaign, assignments: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per segment, the share of its members each arm should have had by the campaign's plan.

    Control gets ``control_share``; the rest is split by the variants' ``share`` in the spec
    (evenly when the spec names none).  The global holdout is outside this plan."""
    spec_segments = {s.get("segment"): s for s in campaign.spec.get("segments", []) if isinstance(s, dict)}
    shares: dict[str, dict[str, float]] = {}
    for segment, rows in assignments.groupby("segment", sort=True):
        variants = [a for a in sorted(set(rows["arm"])) if a not in NOT_TREATED]
        spec_variants = {
            v.get("name"): v.get("share") for v in spec_segments.get(segment, {}).get("variants", [])
        }
        names = [v for v in spec_variants if v] or variants
        given = [spec_variants.get(v) for v in names]
        weights = [float(w) for w in given] if all(w is not None for w in given) else [1.0] * len(names)
        total = sum(weights) or 1.0
        arm_shares = {CONTROL: float(campaign.control_share)}
        for variant, weight in zip(names, weights, strict=True):
            arm_shares[variant] = (1 - campaign.control_share) * weight / total
        shares[str(segment)] = arm_shares
    return shares


def _first_sent(messages: pd.DataFrame) -> pd.DataFrame:
    """Each member's first sent message of this campaign (one per customer and channel)."""
    sent = messages[messages["state"] == "sent"].copy()
    sent["sent_at"] = _utc(sent["sent_at"])
    sent = sent.sort_values("sent_at").drop_duplicates("customer_id")
    return sent[["customer_id", "message_channel", "sent_at"]]


def _other_touches(session: Any, campaign_id: int) -> pd.DataFrame:
    """Sent messages of other campaigns to this campaign's members (who, when)."""
    # Core (connection) queries here and above: ORM row loading doubled the time of a large campaign.
    members = select(Assignment.customer_id).where(Assignment.campaign_id == campaign_id)
    rows = session.connection().execute(
        select(OutboxMessage.customer_id, _raw(OutboxMessage.sent_at)).where(
            OutboxMessage.customer_id.in_(members),
            OutboxMessage.state == "sent",
            OutboxMessage.is_test.is_(False),
            OutboxMessage.campaign_id.is_not(None),
            OutboxMessage.campaign_id != campaign_id,
        )
    ).all()
    touches = pd.DataFrame(rows, columns=["customer_id", "touched_at"])
    touches["touched_at"] = _utc(touches["touched_at"])
    return touches.dropna()


def _cut_at_next_touch(members: pd.DataFrame, touches: pd.DataFrame) -> pd.Series:
    """The attribution end, moved back to the member's next other-campaign message after its touch."""
    pairs = members[["customer_id", "touch_at"]].merge(touches, on="customer_id")
    later = pairs[pairs["touched_at"] > pairs["touch_at"]]
    next_touch = later.groupby("customer_id")["touched_at"].min()
    cut = members["customer_id"].map(next_touch)
    end = members["attribution_end"]
    return end.where(cut.isna() | (cut >= end), cut)


def _message_cost(spec: dict[str, Any], channel: str | None, defaults: dict[str, float]) -> float:
    """One delivered message's cost: the spec's ``cost_per_message`` (a number or per channel), else
    the ``[campaigns]`` cost of its channel (what ``campaign plan`` counts)."""
    given = spec.get("cost_per_message")
    if isinstance(given, int | float):
        return float(given)
    if isinstance(given, dict) and channel in given:
        return float(given[channel])
    return float(defaults.get(channel or "", 0.0))


def _raw(column: Any) -> Any:
    """A timestamp column fetched as the driver gives it, parsed later in one vectorised pass
    (SQLAlchemy's per-row SQLite datetime parsing dominated the time of a large campaign)."""
    return type_coerce(column, String)


def _utc(values: pd.Series) -> pd.Series:
    """Timestamps as timezone-aware UTC (SQLite hands back naive datetimes written as UTC)."""
    converted = pd.to_datetime(values)
    if converted.dt.tz is None:
        return converted.dt.tz_localize("UTC")
    return converted.dt.tz_convert("UTC")


def utc_now() -> datetime:
    return pd.Timestamp.now(tz="UTC").to_pydatetime()
