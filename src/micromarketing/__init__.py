"""micromarketing: find small, well-defined groups of customers, reach each, and prove what it earned.

Start with :class:`Workspace`::

    from micromarketing import Workspace
    ws = Workspace.open("my-workspace")
    ws.ingest("customers", "customers.csv")
    ws.profile()
    ws.table("profiles").to_pandas()
"""

from micromarketing.errors import MicromarketingError
from micromarketing.workspace import Workspace

__all__ = ["MicromarketingError", "Workspace"]
__version__ = "0.1.0"
