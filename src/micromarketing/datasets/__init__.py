"""Demo and reference data sets: the synthetic generator with planted micro-segments and the
CDNOW loader.

* :func:`generate` writes French demo customers, products, stores, transactions, events and
  consent (plus ``truth.csv`` naming each customer's planted segment) — see
  :mod:`micromarketing.datasets.generator` for the generating process and parameters.
* :func:`write_cdnow` turns the CDNOW logs shipped in the ``lifetimes`` wheel into files ingest
  accepts.
"""

from micromarketing.datasets.cdnow import write_cdnow
from micromarketing.datasets.generator import (
    CLUSTER_FEATURES,
    REFERENCE_DATE,
    SEGMENT_SPECS,
    SEGMENTS,
    GeneratedDataset,
    SegmentSpec,
    generate,
)

__all__ = [
    "CLUSTER_FEATURES",
    "REFERENCE_DATE",
    "SEGMENTS",
    "SEGMENT_SPECS",
    "GeneratedDataset",
    "SegmentSpec",
    "generate",
    "write_cdnow",
]
