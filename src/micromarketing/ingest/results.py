"""The result model of ingest: what one file's ingest did (``--json``, the REST API, the demo)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ConfigDict

from micromarketing.results import Result


class IngestResult(Result):
    """What one ingest did.

    ``rows_read`` counts data rows (CSV: records after the header; JSONL: non-blank lines;
    Parquet: rows); ``accepted + rejected == rows_read``.  ``reasons`` counts rejects per
    ``"field: reason"``; ``warnings`` lists what was tolerated (e.g. ignored extra columns,
    orphan references).  ``currency`` is the workspace currency the rows were checked against
    (None: not fixed yet).  ``orphans`` counts accepted rows whose ``customer_id`` is not in
    ``customers`` (accepted: the customers may arrive later), ``orphan_examples`` names up to 5.
    """

    model_config = ConfigDict(frozen=True)

    kind: str
    path: Path
    rows_read: int
    accepted: int
    rejected: int
    quarantine_path: Path | None
    reasons: dict[str, int] = {}
    warnings: tuple[str, ...] = ()
    sha256: str = ""
    currency: str | None = None
    orphans: int = 0
    orphan_examples: tuple[str, ...] = ()
