"""micromarketing: find small, well-defined groups of customers, reach each, and prove what it earned.

Start with :class:`Workspace`::

    from micromarketing import Workspace
    ws = Workspace.open("my-workspace")
    ws.ingest("customers", "customers.csv")
    ws.profile()
    ws.table("profiles").to_pandas()
    ws.clv.fit(); ws.segments.discover(); ws.recommender.fit()

What needs no workspace is reached from here: :func:`generate_dataset` and :func:`write_cdnow`
write demo and reference data, :func:`validate_clv` checks the CLV models on a transaction file,
:func:`run_demo` runs the whole loop on generated data.
"""

from micromarketing.campaigns.spec import EXAMPLE_CAMPAIGN
from micromarketing.datasets import generate as generate_dataset
from micromarketing.datasets import write_cdnow
from micromarketing.demo import DemoReport, run_demo
from micromarketing.errors import MicromarketingError
from micromarketing.ingest import KINDS as INGEST_KINDS
from micromarketing.measure.clv_report import clv_validation_report
from micromarketing.profiles.clv_validate import ValidationResult, read_transactions_file
from micromarketing.profiles.clv_validate import validate as validate_clv
from micromarketing.segments.discover import DEFAULT_PREFIX as DISCOVERY_PREFIX
from micromarketing.workspace import Workspace

__all__ = [
    "DISCOVERY_PREFIX",
    "EXAMPLE_CAMPAIGN",
    "INGEST_KINDS",
    "DemoReport",
    "MicromarketingError",
    "ValidationResult",
    "Workspace",
    "clv_validation_report",
    "generate_dataset",
    "read_transactions_file",
    "run_demo",
    "validate_clv",
    "write_cdnow",
]
__version__ = "0.1.0"
