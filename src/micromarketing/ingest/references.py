"""What ingest checks across tables: the workspace currency and orphan customer references.

**Currency.**  A workspace holds money in one currency, so that profiles and CLV can add amounts
up.  :func:`workspace_currency` decides which: ``settings.ingest.currency`` (written by
``init --currency``), else the currency the stored transactions are in (the stored rows are the
durable record), else -- on the first transactions ingest -- the first row of the file that names
a listed currency.  Rows in another currency are quarantined by
:mod:`micromarketing.ingest.validate` unless ``settings.ingest.fx`` converts them.

**Orphans.**  Transactions, events and consent rows whose ``customer_id`` is not in ``customers``
are *accepted* and reported (count and up to :data:`ORPHAN_EXAMPLES` example ids), because the
customers file may arrive later; :func:`orphans` finds them with one SQL anti-join.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import tomli_w

from micromarketing.config import SETTINGS_FILE, IngestSettings
from micromarketing.errors import ConfigError, IngestError
from micromarketing.ingest.validate import _trim

ORPHAN_EXAMPLES = 5
REFERENCING = ("transactions", "events", "consent")  # tables whose customer_id names a customer


def stored_currency(wh: Any) -> str | None:
    """The currency of the stored transactions (the most frequent one, should a legacy store mix them)."""
    if not wh.has_table("transactions"):
        return None
    tx = wh.table("transactions")
    tx = tx.filter(tx.currency.notnull())
    top = (
        tx.group_by("currency").aggregate(n=tx.count())
        .order_by(ibis.desc("n"), "currency").limit(1).to_pyarrow()
    )
    values = top["currency"].to_pylist()
    return values[0] if values else None


def workspace_currency(
    wh: Any, settings: IngestSettings, path: Path, kind: str, staged: ir.Table, names: list[str]
) -> str | None:
    """The workspace currency rows of ``kind`` are checked against (None: not fixed, nothing to check).

    The setting wins when it agrees with the stored transactions; a setting that contradicts
    them raises :class:`IngestError` (accepting both would make ``profile`` refuse the
    warehouse).  With neither, a transactions file fixes it by its first row naming a listed
    currency; other kinds leave it open.
    """
    stored = stored_currency(wh)
    configured = settings.currency
    if configured and stored and configured != stored:
        raise IngestError(
            f"{path}: settings.ingest.currency is {configured} but the stored transactions are in "
            f"{stored}; a workspace holds one currency"
        )
    if configured or stored:
        return configured or stored
    if kind != "transactions" or "currency" not in names:
        return None
    code = _trim(staged.currency).upper()
    first = (
        staged.select("_row", code=code).filter(ibis._.code.isin(list(settings.currencies)))
        .order_by("_row").limit(1).to_pyarrow()
    )
    values = first["code"].to_pylist()
    return values[0] if values else None


def orphans(wh: Any, kind: str, accepted: ir.Table) -> tuple[int, tuple[str, ...]]:
    """Accepted rows of ``kind`` whose customer is not stored: (row count, up to 5 example ids).

    One anti-join of the accepted rows against the stored ``customers`` (which hold every
    customer ingested so far, including a customers file ingested just before).
    """
    if kind not in REFERENCING:
        return 0, ()
    refs = accepted.select("customer_id")
    missing = refs.anti_join(wh.table("customers"), "customer_id")
    count = int(missing.count().to_pyarrow().as_py())
    if not count:
        return 0, ()
    examples = (
        missing.select("customer_id").distinct().order_by("customer_id").limit(ORPHAN_EXAMPLES)
        .to_pyarrow()["customer_id"].to_pylist()
    )
    return count, tuple(examples)


def set_workspace_currency(root: Path, code: str) -> str:
    """Record ``code`` as the currency of the workspace at ``root`` (``init --currency``); returns it.

    Writes ``currency`` and ``[ingest] currency`` into the settings file, so offers and ingest
    agree.  Raises :class:`ConfigError` for a code that is not in ``settings.ingest.currencies``.
    """
    path = root / SETTINGS_FILE
    data = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    code = code.strip().upper()
    listed = data.get("ingest", {}).get("currencies") or IngestSettings().currencies
    if code not in listed:
        raise ConfigError(f"--currency {code!r}: not in settings.ingest.currencies ({', '.join(listed)})")
    data["currency"] = code
    data.setdefault("ingest", {})["currency"] = code
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return code
