"""The Workspace facade: one directory holding settings, the warehouse and the operations store.

CLI, REST API, web dashboard and Python users all go through a Workspace.  It sits *above* the
domain packages: it owns one :class:`~micromarketing.store.context.StoreContext` and wires the
domain services as lazily created sub-facades (``ws.clv``, ``ws.segments``, ``ws.templates``,
``ws.offers``, ``ws.recommender``, ``ws.campaigns``, ``ws.measure``, ``ws.reports``); the domain
packages receive the context and
never import it.
"""

from __future__ import annotations

import os
from datetime import date
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from micromarketing.api_keys import ApiKeys
from micromarketing.campaigns.delivery import Delivery
from micromarketing.campaigns.service import Campaigns
from micromarketing.config import SETTINGS_FILE, Settings, load_settings, write_default_settings
from micromarketing.errors import DataError, WorkspaceError
from micromarketing.ingest import IngestResult, ingest_file
from micromarketing.measure.report_service import Reports
from micromarketing.measure.service import Measure
from micromarketing.personalize.service import Offers, Recommender, Templates
from micromarketing.preferences import PreferenceCentre
from micromarketing.privacy.service import PrivacyService
from micromarketing.profiles import ProfileResult, build_profiles
from micromarketing.profiles.service import Clv
from micromarketing.profiles.summary import CustomerView, customer_view, rfm_summary
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.segment_of_one import SegmentOfOne, segment_of_one
from micromarketing.segments.service import SegmentService
from micromarketing.store import OperationsStore, Warehouse
from micromarketing.store.context import StoreContext
from micromarketing.store.lock import others_waiting
from micromarketing.store.spark import engine_error as engine_error  # re-exported for the CLI

WORKSPACE_ENV = "MICROMARKETING_WORKSPACE"


class Workspace:
    """A micromarketing workspace directory and its open stores."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.context = StoreContext.connect(root, settings)

    @property
    def root(self) -> Path:
        return self.context.root

    @property
    def settings(self) -> Settings:
        return self.context.settings

    @property
    def warehouse(self) -> Warehouse:
        return self.context.warehouse

    @property
    def ops(self) -> OperationsStore:
        return self.context.ops

    # -- sub-facades (one per domain package, created on first use) --------------------------
    @cached_property
    def clv(self) -> Clv:
        """Customer-lifetime-value models: ``fit``, ``backtest``, ``latest``."""
        return Clv(self.context, segment_groups=self._discovered_segment_groups)

    def _discovered_segment_groups(self, as_of: date) -> ir.Table:
        """``customer_id, group``: discovered segments as materialised on or before ``as_of``.

        Wired into ``ws.clv`` here because profiles sit below segments in the layering.
        """
        parts = []
        for info in self.segments.list():
            if info.kind != "discovered" or info.details.get("retired"):
                continue
            try:
                members = self.segments.member_table(info.name, as_of=as_of)
            except DataError:
                continue  # materialised only after as_of: not known at that date
            parts.append(members.select("customer_id", group=ibis.literal(info.name)))
        if not parts:
            raise DataError(
                f"no discovered segments materialised on or before {as_of.isoformat()}: run "
                "`micromarketing profile --as-of DATE` and `micromarketing segment discover` first"
            )
        union = ibis.union(*parts) if len(parts) > 1 else parts[0]
        return union.group_by("customer_id").aggregate(group=union.group.min())

    @cached_property
    def segments(self) -> SegmentService:
        """Rule and discovered segments: ``create``, ``list``, ``members``, ``preview``, ``discover``."""
        return SegmentService(self.context)

    @cached_property
    def templates(self) -> Templates:
        """Message templates: ``add``, ``list``, ``preview``, ``check``, ``render``."""
        return Templates(self.context)

    @cached_property
    def offers(self) -> Offers:
        """Offers: ``add``, ``list``, ``fit_propensity``, ``next_best``."""
        return Offers(self.context)

    @cached_property
    def recommender(self) -> Recommender:
        """Product recommendations: ``fit``, ``evaluate``, ``recommend``."""
        return Recommender(self.context)

    @cached_property
    def reports(self) -> Reports:
        """HTML reports with charts: ``build``, ``write``, ``inputs``, ``campaign``."""
        return Reports(self.context)

    @cached_property
    def measure(self) -> Measure:
        """Campaign measurement and budget reallocation: ``campaign``, ``allocate``."""
        return Measure(self.context)

    @cached_property
    def campaigns(self) -> Campaigns:
        """Campaigns: ``plan``, ``run``, ``test``, ``status``, ``list``."""
        return Campaigns(self.context)

    @cached_property
    def delivery(self) -> Delivery:
        """Outbox delivery: ``deliver``, ``status``, ``ledger``, ``suppress_import``."""
        return Delivery(self.context)

    @cached_property
    def privacy(self) -> PrivacyService:
        """Consent ledger, erasure, export, retention, audit log: ``record_consent``, ``forget``, …"""
        return PrivacyService(self.context)

    @cached_property
    def api_keys(self) -> ApiKeys:
        """REST API keys: ``create``, ``list``, ``revoke``, ``authenticate``."""
        return ApiKeys(self.context)

    @cached_property
    def preferences(self) -> PreferenceCentre:
        """The customer's own links: ``unsubscribe``, ``set_channels``, ``pause``, ``export``…"""
        return PreferenceCentre(self.context)

    # -- lifecycle --------------------------------------------------------------------------
    @classmethod
    def init(cls, root: str | os.PathLike[str], currency: str | None = None) -> Workspace:
        """Create a workspace in ``root`` (settings file, warehouse, operations store).

        ``currency`` fixes the workspace currency; without it the first transactions ingested do.
        """
        path = Path(root)
        if (path / SETTINGS_FILE).exists():
            raise WorkspaceError(f"{path} is already a workspace ({SETTINGS_FILE} exists)")
        path.mkdir(parents=True, exist_ok=True)
        write_default_settings(path)
        if currency is not None:
            from micromarketing.ingest.references import set_workspace_currency

            set_workspace_currency(path, currency)
        ws = cls(path.resolve(), load_settings(path))
        ws.warehouse.ensure_schema()
        ws.ops.create_all()
        return ws

    @classmethod
    def open(
        cls, root: str | os.PathLike[str] | None = None, *, warehouse_threads: int | None = None
    ) -> Workspace:
        """Open an existing workspace: ``root``, else $MICROMARKETING_WORKSPACE, else the cwd.

        ``warehouse_threads`` overrides ``[warehouse] threads`` for this process (the API server
        passes ``[server] warehouse_threads``)."""
        path = Path(root or os.environ.get(WORKSPACE_ENV) or ".").resolve()
        if not (path / SETTINGS_FILE).exists():
            raise WorkspaceError(
                f"{path} is not a workspace (no {SETTINGS_FILE}); run `micromarketing init {path}`"
            )
        settings = load_settings(path)
        if warehouse_threads:
            warehouse = settings.warehouse.model_copy(update={"threads": warehouse_threads})
            settings = settings.model_copy(update={"warehouse": warehouse})
        ws = cls(path, settings)
        ws.ops.create_all()
        return ws

    def close(self) -> None:
        """Release both stores (DuckDB allows one writer process per file)."""
        self.context.close()

    def others_waiting(self) -> bool:
        """Whether another process waits for this workspace's warehouse (a long-lived holder such
        as the API server then closes the workspace so that it can go first)."""
        return self.warehouse.backend_name == "duckdb" and others_waiting(self.warehouse.path)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- data -------------------------------------------------------------------------------
    def table(self, name: str) -> ir.Table:
        """A warehouse table as an Ibis expression (``.to_pandas()`` / ``.to_polars()`` for frames)."""
        return self.warehouse.table(name)

    def ingest(
        self, kind: str, path: str | os.PathLike[str], progress: ProgressCallback = noop_progress
    ) -> IngestResult:
        """Validate and upsert one file of ``kind``; rejected rows go to a quarantine file (audited)."""
        result = ingest_file(self.context, kind, Path(path), progress=progress)
        self.audit("ingest", kind, {"file": Path(path).name, "sha256": result.sha256,
                                    "accepted": result.accepted, "rejected": result.rejected})
        return result

    def profile(self, as_of: date | None = None, progress: ProgressCallback = noop_progress) -> ProfileResult:
        """Build the ``profiles`` table as of ``as_of`` (default: the day after the last order; audited)."""
        result = build_profiles(self.context, as_of=as_of, progress=progress)
        self.audit("profile", "profiles", {"as_of": str(as_of) if as_of else None})
        return result

    def rfm_summary(self) -> pd.DataFrame:
        """Customers, revenue and averages per RFM segment of the current profiles."""
        return rfm_summary(self.context)

    def customer(self, customer_id: str, orders: int = 10) -> CustomerView:
        """One customer's profile and latest ``orders`` orders."""
        return customer_view(self.context, customer_id, orders)

    def segment_of_one(self, customer_id: str, orders: int = 10) -> SegmentOfOne:
        """One customer's profile, recent orders, consent and its history, and their segments."""
        return segment_of_one(self.context, customer_id, orders)

    # -- audit ------------------------------------------------------------------------------
    def audit(
        self, action: str, subject: str, details: dict[str, Any] | None = None, actor: str = "cli"
    ) -> None:
        """Append one record to the audit log."""
        self.context.audit(action, subject, details, actor)
