"""The result models of segment discovery: what ``segment discover`` prints, ``--json`` writes
and the REST API returns."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Any

from pydantic import InstanceOf, field_serializer

from micromarketing.results import Result
from micromarketing.segments.personas import Persona


class KScore(Result):
    """How one candidate k scored during selection."""

    k: int
    stability: float | None
    silhouette: float | None
    smallest: int  # estimated size of the smallest cluster in the whole population
    eligible: bool


class DiscoveredSegment(Result):
    """One saved cluster: its segment name and version, persona and the guard warnings."""

    name: str
    version: int
    cluster: int
    size: int
    persona: InstanceOf[Persona]
    warnings: list[str] = []

    @field_serializer("persona")
    def _persona(self, persona: Persona) -> dict[str, Any]:
        return asdict(persona)


class DiscoveryResult(Result):
    """What :func:`~micromarketing.segments.discover.discover_segments` did."""

    as_of: date
    prefix: str
    k: int
    k_mode: str  # auto | fixed
    criterion: str
    scores: list[KScore]
    features: list[str]
    customers: int  # clustered (customers with orders)
    excluded_no_orders: int
    min_size: int
    seed: int
    fitted_on: int  # customers pulled to the driver, on which k was chosen and k-means fitted
    segments: list[DiscoveredSegment]
    retired: list[str] = []
    warnings: list[str] = []
    timings: dict[str, float] = {}
    saved: bool = True
