"""Ingest: read CSV/Parquet/JSONL files, validate them against the schema, upsert, quarantine rejects.

``ingest_file(ctx, kind, path)`` is the entry point (``Workspace.ingest`` delegates to it).
"""

from micromarketing.ingest.pipeline import ingest_file
from micromarketing.ingest.results import IngestResult
from micromarketing.ingest.validate import MAX_TEXT
from micromarketing.store.schema import TABLES

KINDS: tuple[str, ...] = tuple(TABLES)  # what `ingest KIND` accepts

__all__ = ["KINDS", "MAX_TEXT", "IngestResult", "ingest_file"]
