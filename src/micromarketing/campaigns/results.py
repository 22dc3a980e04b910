"""What the campaigns package returns: plans, runs, statuses (Pydantic models the CLI's ``--json``,
the REST API and the web pages serialise alike)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class VariantPlan(BaseModel):
    """One variant of one segment on its channel."""

    segment: str
    variant: str
    channel: str
    template: str | None
    template_version: int | None
    offer: str | None
    members: int
    removed: dict[str, int]
    deferred: int
    reach: int
    cost: float
    cost_per_message: float
    response_rate: float
    expected_conversions: float
    expected_revenue: float
    expected_margin: float
    roi: float | None
    mean_clv: float | None
    mde_absolute: float | None
    mde_relative: float | None


class SegmentPlan(BaseModel):
    """One segment: members, control, holdout, members already in an earlier segment, variants."""

    segment: str
    members: int
    control: int
    global_holdout: int
    in_earlier_segment: int
    variants: list[VariantPlan]


class CampaignPlan(BaseModel):
    """The whole plan: totals (integers ``members``, ``control``, ``reach``), the breakdown per
    segment and variant, the assumptions behind the figures and the warnings."""

    name: str
    spec_sha256: str
    planned_for: datetime
    members: int
    control: int
    global_holdout: int
    reach: int
    removed: dict[str, int]
    deferred: int
    cost: float
    budget: float | None
    expected_conversions: float
    expected_revenue: float
    expected_margin: float
    roi: float | None
    segments: list[SegmentPlan]
    assumptions: list[str]
    warnings: list[str]


class RunResult(BaseModel):
    """What one ``campaign run`` wrote (all zero on a re-run of the same file)."""

    name: str
    campaign_id: int
    status: str
    already_run: bool
    members: int
    control: int
    global_holdout: int
    assignments_inserted: int
    messages_inserted: int
    pending: int
    deferred: int  # pending with not_before at the end of the recipient's quiet hours
    skipped: int
    skipped_by_rule: dict[str, int]
    seconds: float
    message: str


class CampaignStatus(BaseModel):
    """Integer counts of a campaign's outbox rows per state, and of its control group."""

    name: str
    status: str
    pending: int
    sending: int
    sent: int
    deferred: int
    failed: int
    skipped: int
    control: int
    global_holdout: int
    members: int
    skipped_reasons: dict[str, int] = {}  # why the skipped messages were skipped, most frequent first

    @property
    def in_flight(self) -> bool:
        """Messages the delivery worker has yet to finish (pending, being sent or deferred)."""
        return self.pending + self.sending + self.deferred > 0


class CampaignSummary(BaseModel):
    """One line of ``campaign list``."""

    name: str
    status: str
    objective: str
    priority: int
    members: int
    messages: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TestSend(BaseModel):
    """Proof messages queued by ``campaign test``."""

    name: str
    messages: int
    to: list[str]
    variants: list[str]
    skipped: list[str]
