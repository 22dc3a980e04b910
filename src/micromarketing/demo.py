"""The main job: run the whole micromarketing loop that exists so far on generated data.

generate demo data → ingest every file → profile → report.  Each later capability (CLV,
segments, personalisation, campaigns, measurement) adds its step here so that
``micromarketing demo`` always exercises the full loop end to end.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from micromarketing.config import SETTINGS_FILE
from micromarketing.errors import WorkspaceError
from micromarketing.ingest import IngestResult
from micromarketing.profiles import ProfileResult
from micromarketing.profiles.summary import rfm_summary
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.workspace import Workspace

INGEST_ORDER = ("products", "stores", "customers", "transactions", "events", "consent")


@dataclass
class DemoReport:
    """What the demo did, with timings per step, for the CLI to print."""

    workspace: Path
    data_dir: Path
    ingested: list[IngestResult] = field(default_factory=list)
    profile: ProfileResult | None = None
    rfm: pd.DataFrame | None = None
    timings: dict[str, float] = field(default_factory=dict)


def run_demo(
    out: Path, customers: int = 20_000, seed: int = 7, progress: ProgressCallback = noop_progress
) -> DemoReport:
    """Generate data into ``out/data``, build a fresh workspace in ``out/workspace``, run the loop."""
    from micromarketing.datasets import generate

    data_dir, ws_dir = out / "data", out / "workspace"
    if ws_dir.exists():
        if not (ws_dir / SETTINGS_FILE).exists():
            raise WorkspaceError(f"{ws_dir} exists and is not a workspace; choose another --out")
        shutil.rmtree(ws_dir)
    report = DemoReport(workspace=ws_dir, data_dir=data_dir)

    with _timed(report, "generate"):
        generate(data_dir, customers=customers, seed=seed, progress=progress)
    with Workspace.init(ws_dir) as ws:
        with _timed(report, "ingest"):
            for kind in INGEST_ORDER:
                for path in sorted(data_dir.glob(f"{kind}.*")):
                    report.ingested.append(ws.ingest(kind, path, progress=progress))
        with _timed(report, "profile"):
            report.profile = ws.profile(progress=progress)
            report.rfm = rfm_summary(ws)
    return report


class _timed:
    def __init__(self, report: DemoReport, step: str) -> None:
        self.report, self.step = report, step

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.report.timings[self.step] = time.perf_counter() - self.start
