"""The ``Delivery`` sub-facade (``ws.delivery``): send what the outbox holds, read the send
ledger, import a provider's suppression export."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from micromarketing.campaigns import deliver as worker
from micromarketing.campaigns import outbox
from micromarketing.campaigns.deliver import DeliveryReport, Policy, Render
from micromarketing.campaigns.outbox import CustomerLedger, SuppressionImportResult
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.store.context import StoreContext


class Delivery:
    """Delivery of the outbox to the channels, and the records it keeps."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx

    def deliver(
        self,
        *,
        workers: int = 1,
        rate: float | None = None,
        follow: bool = False,
        campaign: str | None = None,
        policy: Policy | None = None,
        render: Render | None = None,
        progress: ProgressCallback = noop_progress,
        stop: Callable[[], bool] = lambda: False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> DeliveryReport:
        """Send every due message (of ``campaign`` only, when named; ``follow``: keep polling
        until ``stop()``) under the campaigns' contact policy unless ``policy`` is given; see
        :func:`micromarketing.campaigns.deliver.deliver`."""
        return worker.deliver(
            self.ctx,
            workers=workers,
            rate=rate,
            follow=follow,
            campaign=campaign,
            policy=policy,
            render=render or worker.render_frozen,
            progress=progress,
            stop=stop,
            clock=clock,
        )

    def status(self, campaign_id: int | None = None) -> dict[str, int]:
        """Outbox rows per state, for one campaign or all."""
        return outbox.state_counts(self.ctx, campaign_id)

    def ledger(self, customer_id: str) -> CustomerLedger:
        """Every message queued for ``customer_id`` and each attempt's outcome."""
        return outbox.customer_ledger(self.ctx, customer_id)

    def suppress_import(self, path: str | os.PathLike[str]) -> SuppressionImportResult:
        """Store a provider's bounce/complaint export in the suppression list."""
        return outbox.import_suppressions(self.ctx, Path(path))
