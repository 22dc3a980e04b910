"""Storage: the only package that opens database connections (warehouse and operations store)."""

from micromarketing.store.ops import OperationsStore
from micromarketing.store.warehouse import Warehouse

__all__ = ["OperationsStore", "Warehouse"]
