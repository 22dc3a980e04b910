"""Small generated data sets shared by the datasets tests (generated once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from micromarketing.datasets import GeneratedDataset, generate


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDataset:
    """2,500 customers as CSV + JSONL, generated in 1,000-customer chunks."""
    return generate(tmp_path_factory.mktemp("gen-csv"), customers=2_500, seed=5, chunk_size=1_000)


@pytest.fixture(scope="session")
def small_parquet(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDataset:
    return generate(tmp_path_factory.mktemp("gen-parquet"), customers=1_200, seed=5, fmt="parquet")


@pytest.fixture(scope="session")
def segments_3000(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 customers for the segment-recoverability test."""
    out = tmp_path_factory.mktemp("gen-3000")
    generate(out, customers=3_000, seed=2026)
    return out
