"""The catalogue of a segment rule: the warehouse tables and fields it can see, and the names
an error suggests instead of a misspelt one.

:class:`Catalog` looks each table up once per evaluation batch; the field lists say which columns
only a fitted CLV model or a built profile provides, so naming one early gets a precise message.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import ibis.expr.types as ir

from micromarketing.errors import DataError
from micromarketing.profiles.build import PROFILE_COLUMNS
from micromarketing.profiles.clv import CLV_COLUMNS

# Columns the profile builder writes only once a CLV model is fitted: naming one before that gets
# a precise message instead of a did-you-mean.
CLV_FIELDS = CLV_COLUMNS
PROFILE_FIELDS = tuple(c for c in PROFILE_COLUMNS if c not in {"customer_id", "as_of"})
FIELD_ALIASES = {"last_order": "last_order_at", "first_order": "first_order_at"}
# Renamed fields: the old name still works (saved rules keep it) with a warning naming the new one.
RENAMED_FIELDS = {"clv_12m": "clv"}  # the horizon is the setting [clv] horizon_months, not part of the name
# Columns never offered as rule fields (the profile snapshot date is the `as_of()` function).
HIDDEN_COLUMNS = frozenset({"as_of"})


@dataclass(frozen=True)
class SegmentRef:
    """What :func:`compile_rule` needs to know about another segment for ``in_segment(name)``."""

    name: str
    kind: str  # rule | discovered
    version: int
    rule: str = ""


SegmentResolver = Callable[[str], SegmentRef | None]


class Catalog:
    """The warehouse tables a rule can see, looked up once and cached (one per evaluation batch)."""

    def __init__(self, warehouse: Any) -> None:
        self.warehouse = warehouse
        self._names: set[str] | None = None
        self._tables: dict[str, ir.Table] = {}
        self._profile_as_of: date | None | bool = False
        self._stores: dict[str, tuple[float, float] | None] = {}

    @property
    def dialect(self) -> str:
        return str(self.warehouse.backend_name)

    def has(self, name: str) -> bool:
        if self._names is None:
            self._names = set(self.warehouse.con.list_tables())
        return name in self._names

    def table(self, name: str) -> ir.Table | None:
        if name not in self._tables:
            if not self.has(name):
                return None
            self._tables[name] = self.warehouse.con.table(name)
        return self._tables[name]

    def refresh(self) -> None:
        """Forget cached tables (after a table was created or replaced)."""
        self._names = None
        self._tables.clear()
        self._profile_as_of = False

    def profile_as_of(self) -> date | None:
        """The as-of date of the profiles table, if profiles exist.

        The profile builder replaces the whole table with one snapshot (every row has the same
        ``as_of``), so one row answers it: a full ``max()`` would cost a scan of every profile.
        """
        if self._profile_as_of is False:
            profiles = self.table("profiles")
            value = None
            if profiles is not None and "as_of" in profiles.columns:
                first = profiles.select("as_of").limit(1).to_pyarrow()
                value = to_date(first.column(0)[0].as_py()) if first.num_rows else None
            self._profile_as_of = value
        return self._profile_as_of  # type: ignore[return-value]

    def default_as_of(self) -> date:
        """The profiles' as-of date, else the day after the last order, else today (UTC)."""
        found = self.profile_as_of()
        if found is not None:
            return found
        tx = self.table("transactions")
        if tx is not None:
            last = to_date(tx.ordered_at.max().execute())
            if last is not None:
                return last + timedelta(days=1)
        return datetime.now(UTC).date()

    def store_location(self, store_id: str) -> tuple[float, float] | None:
        if store_id not in self._stores:
            stores = self.table("stores")
            loc = None
            if stores is not None:
                rows = stores.filter(stores.store_id == store_id).select("lat", "lon").limit(1).to_pyarrow()
                if rows.num_rows:
                    lat, lon = rows.column("lat")[0].as_py(), rows.column("lon")[0].as_py()
                    if lat is not None and lon is not None:
                        loc = (float(lat), float(lon))
            self._stores[store_id] = loc
        return self._stores[store_id]

    def store_ids(self) -> list[str]:
        stores = self.table("stores")
        if stores is None:
            return []
        return [str(v) for v in stores.store_id.to_pyarrow().to_pylist() if v is not None]

    def universe(self) -> ir.Table:
        """The table whose rows are the population: profiles, else customers."""
        for name in ("profiles", "customers"):
            table = self.table(name)
            if table is not None:
                return table
        raise DataError("no customers yet: ingest customers (and run `profile`) before using segments")

    def fields(self) -> dict[str, str]:
        """Rule field name -> the table it comes from (profiles first, then customers)."""
        out: dict[str, str] = {}
        profiles = self.table("profiles")
        if profiles is not None:
            out.update({c: "profiles" for c in profiles.columns if c not in HIDDEN_COLUMNS})
        customers = self.table("customers")
        if customers is not None:
            for c in customers.columns:
                out.setdefault(c, "customers")
        return out

    def base(self, needed: set[str] | None = None) -> ir.Table:
        """The universe left-joined to the ``customers`` columns in ``needed`` (all if None)."""
        universe = self.universe()
        customers = self.table("customers")
        # Hidden columns are never resolvable as fields, so the universe need not be projected
        # (fewer nodes to compile: this is on the path of every count).
        if customers is None or universe is customers:
            return universe
        extra = [
            c for c, src in self.fields().items() if src == "customers" and (needed is None or c in needed)
        ]
        keep = [c for c in universe.columns if c not in HIDDEN_COLUMNS]
        if not extra:
            return universe
        right = customers.select("customer_id", *extra)
        joined = universe.left_join(right, universe.customer_id == right.customer_id)
        return joined.select(*[universe[c] for c in keep], *[right[c] for c in extra])


def did_you_mean(name: str, candidates: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or an empty string.

    Candidates are scored with difflib against the whole name and against its leading part
    (``recency`` of ``recency_days``), so abbreviations such as ``recncy`` find ``recency_days``.
    """
    target = name.lower()
    best, best_score = None, 0.0
    for cand in candidates:
        low = cand.lower()
        score = difflib.SequenceMatcher(None, target, low).ratio()
        head = low.split("_")[0]
        if head != low and len(head) >= 3:
            score = max(score, difflib.SequenceMatcher(None, target, head).ratio() - 0.05)
        score += 0.01 * len(os.path.commonprefix([target, low]))  # tie-break: S013 -> S012, not S001
        if score > best_score:
            best, best_score = cand, score
    return f"; did you mean {best!r}?" if best is not None and best_score >= 0.6 else ""


def to_date(value: Any) -> date | None:
    if value is None:
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if hasattr(value, "date"):
        return value.date()  # pandas Timestamp
    return date.fromisoformat(str(value)[:10])
