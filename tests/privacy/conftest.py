"""Privacy tests run on both operations stores: reuse ``tests/store/conftest.py``'s fixtures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "mm_store_fixtures"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).parents[1] / "store" / "conftest.py")
    assert _spec is not None and _spec.loader is not None
    sys.modules[_NAME] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_NAME])

from mm_store_fixtures import ops_url, ops_workspace, postgres_url  # noqa: E402, F401
