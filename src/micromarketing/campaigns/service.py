"""The campaigns sub-facade, ``ws.campaigns``: load, plan, run, test, status and list."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from micromarketing.campaigns.plan import CampaignPlan, plan_campaign
from micromarketing.campaigns.run import (
    CampaignStatus,
    CampaignSummary,
    RunResult,
    TestSend,
    campaign_assignments,
    campaign_status,
    list_campaigns,
    run_campaign,
    send_tests,
)
from micromarketing.campaigns.spec import (
    CHANNELS,
    CampaignSpec,
    check_references,
    load_spec,
    parse_spec,
    spec_from_mapping,
)
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.store.context import StoreContext

SpecSource = str | os.PathLike[str] | CampaignSpec


class Campaigns:
    """Campaign files turned into plans, assignments and outbox rows."""

    #: The delivery channels a variant may use.
    channels: tuple[str, ...] = CHANNELS

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx

    def _spec(self, spec: SpecSource) -> tuple[CampaignSpec, str]:
        if isinstance(spec, CampaignSpec):
            return spec, f"campaign {spec.name}"
        return load_spec(Path(spec)), str(spec)

    def parse(self, text: str | Mapping[str, Any], source: str = "<campaign>") -> CampaignSpec:
        """Validate a campaign given as YAML text (an API body) or as a mapping (a form's fields)
        and check its references."""
        spec = parse_spec(text, source) if isinstance(text, str) else spec_from_mapping(text, source)
        check_references(self.ctx, spec, source)
        return spec

    def load(self, path: str | os.PathLike[str]) -> CampaignSpec:
        """Read a campaign file and check it against the workspace (segments, templates, offers)."""
        spec, source = self._spec(path)
        check_references(self.ctx, spec, source)
        return spec

    def plan(self, spec: SpecSource) -> CampaignPlan:
        """Members, control, policy removals, reach, cost, expected returns and power; nothing
        is sent or written."""
        spec, source = self._spec(spec)
        return plan_campaign(self.ctx, spec, source=source)

    def run(
        self,
        spec: SpecSource,
        *,
        now: datetime | None = None,
        progress: ProgressCallback = noop_progress,
        actor: str = "cli",
    ) -> RunResult:
        """Store the campaign, assign every member and fill the outbox (delivery is separate);
        ``now`` (default: the clock) is when it is assigned and when the policy looks; ``actor``
        is who the audit log names."""
        spec, source = self._spec(spec)
        return run_campaign(self.ctx, spec, source=source, now=now, progress=progress, actor=actor)

    def assignments(self, name: str) -> pd.DataFrame:
        """Every member of campaign ``name`` with their arm, assignment time and whether a
        message of theirs was sent."""
        return campaign_assignments(self.ctx, name)

    def test(self, spec: SpecSource, to: list[str]) -> TestSend:
        """Queue proofs of every variant to seed addresses (marked as tests)."""
        spec, source = self._spec(spec)
        return send_tests(self.ctx, spec, to, source=source)

    def status(self, name: str) -> CampaignStatus:
        """Outbox counts per state and the control group of campaign ``name``."""
        return campaign_status(self.ctx, name)

    def list(self) -> list[CampaignSummary]:
        """Every campaign with its status."""
        return list_campaigns(self.ctx)
