"""Product recommendations from implicit feedback: fit, score, cold start and offline evaluation.

What it owns
------------
* **Interactions**: purchases (distinct orders per customer and product) and product views /
  add-to-cart events, aggregated in the warehouse through Ibis and pulled back as one sparse
  customers × products matrix of confidence weights
  ``log1p(orders) + VIEW_WEIGHT * log1p(views + carts)``.
* **Models** (``method``): ``"item"`` — item-item cosine similarity of co-occurrence with
  shrinkage, pruned to the ``neighbours`` strongest per item, scored as ``weights @ S`` (SciPy
  sparse); ``"als"`` — implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008) fitted
  with the ``implicit`` package's ALS when it is installed.  For ALS only the item factors are
  stored: a customer's factors are recomputed from their current history with the exact ALS user
  step, so customers and purchases after the fit are scored without refitting.
* **Business rules**: items already bought in a non-repeatable category (``products.repeatable``
  false: a sofa, a laptop) are never recommended again; viewed-only items may be.  Customers with
  no interactions (cold start) get what is popular among customers of their segment and region —
  the most specific stored segment they belong to (else their profile's age band) and their city
  — backing off to segment only, region only and the whole base when a group has fewer than
  ``MIN_GROUP_BUYERS`` buyers.
* **Artefacts**: arrays under ``<workspace>/models/recommender/v<N>/`` (``np.save`` /
  ``scipy.sparse.save_npz``, no pickles) and the metadata in ``ModelVersion(kind="recommender")``.
* **Offline evaluation**: time-based split, precision@k, recall@k, NDCG@k and catalogue coverage
  of the model against a popularity baseline in the same run, on the same users and exclusions.

Why hand-written
----------------
Item-item co-occurrence is three sparse-matrix lines; a library would add a dependency without
removing code (the business exclusions, cold start and evaluation are ours either way).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sqlalchemy import select

from micromarketing.errors import DataError, ModelError
from micromarketing.exprs import midnight_utc
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.store.context import StoreContext
from micromarketing.store.models import ModelVersion
from micromarketing.store.versions import next_version

KIND = "recommender"
VIEW_WEIGHT = 0.3
VIEW_EVENTS = ("product_view", "add_to_cart")
MIN_GROUP_BUYERS = 20
METHODS = ("item", "als", "hybrid")
BASELINES = ("popularity", "popularity_recent", "buy_again", "segment_popularity")
RECENT_DAYS = 90  # "recent" popularity: purchases in the last 90 days of the training period
# Weights of buy-again and segment popularity blended with item-item scores (each scaled to its
# row maximum) that the hybrid tries on the validation split.
HYBRID_GRID = tuple((b, g) for b in (0.0, 0.25, 0.5, 1.0, 2.0) for g in (0.0, 0.25, 0.5, 1.0))
_BATCH = 4096


# ---------------------------------------------------------------------------------------------
# interactions
# ---------------------------------------------------------------------------------------------
def interactions_expr(
    ctx: StoreContext,
    *,
    start: date | None = None,
    end: date | None = None,
    customers: ir.Table | None = None,
    views: bool = True,
) -> ir.Table:
    """Per (customer_id, product_id): distinct ``orders`` and ``views`` (views + carts) in [start, end)."""
    tx = ctx.table("transactions")
    tx = tx.filter(tx.product_id.notnull())
    if start is not None:
        tx = tx.filter(tx.ordered_at >= midnight_utc(start))
    if end is not None:
        tx = tx.filter(tx.ordered_at < midnight_utc(end))
    bought = tx.group_by("customer_id", "product_id").aggregate(
        orders=tx.order_id.nunique().cast("int64"), views=ibis.literal(0, type="int64")
    )
    parts = [bought]
    if views and ctx.warehouse.has_table("events"):
        ev = ctx.table("events")
        ev = ev.filter(ev.event_type.isin(VIEW_EVENTS) & ev.product_id.notnull())
        if start is not None:
            ev = ev.filter(ev.occurred_at >= midnight_utc(start))
        if end is not None:
            ev = ev.filter(ev.occurred_at < midnight_utc(end))
        parts.append(
            ev.group_by("customer_id", "product_id").aggregate(
                orders=ibis.literal(0, type="int64"), views=ev.count().cast("int64")
            )
        )
    rows = parts[0] if len(parts) == 1 else parts[0].union(parts[1], distinct=False)
    rows = rows.group_by("customer_id", "product_id").aggregate(
        orders=rows.orders.sum(), views=rows.views.sum()
    )
    if customers is not None:
        ids = customers.select(_cid=customers.customer_id.cast("string")).distinct()
        rows = rows.join(ids, rows.customer_id == ids._cid).drop("_cid")
    return rows


def confidence(orders: np.ndarray, views: np.ndarray) -> np.ndarray:
    """The interaction weight: ``log1p(orders) + VIEW_WEIGHT * log1p(views)``."""
    return (np.log1p(orders) + VIEW_WEIGHT * np.log1p(views)).astype(np.float32)


@dataclass
class Catalogue:
    """Product ids in matrix order and whether each may be recommended again after a purchase."""

    items: np.ndarray  # str
    repeatable: np.ndarray  # bool

    @property
    def index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.items.tolist())}


def load_catalogue(ctx: StoreContext) -> Catalogue:
    """All products (sorted by id); a product seen only in transactions counts as repeatable."""
    products = ctx.table("products").select("product_id", "repeatable").to_pandas()
    tx = ctx.table("transactions")
    seen = tx.filter(tx.product_id.notnull()).select("product_id").distinct().to_pandas()
    extra = sorted(set(seen["product_id"]) - set(products["product_id"]))
    frame = pd.concat([products, pd.DataFrame({"product_id": extra, "repeatable": True})], ignore_index=True)
    frame = frame.sort_values("product_id").reset_index(drop=True)
    rep = frame["repeatable"].astype("boolean").fillna(True).to_numpy(dtype=bool)
    return Catalogue(frame["product_id"].to_numpy(dtype=str), rep)


def _matrix(frame: pd.DataFrame, users: list[str], cat: Catalogue) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(weights, bought) sparse matrices with one row per entry of ``users``."""
    uidx = {u: i for i, u in enumerate(users)}
    iidx = cat.index
    rows = frame["customer_id"].map(uidx)
    cols = frame["product_id"].map(iidx)
    ok = rows.notna() & cols.notna()
    r = rows[ok].to_numpy(dtype=np.int64)
    c = cols[ok].to_numpy(dtype=np.int64)
    orders = frame["orders"][ok].to_numpy(dtype=np.float64)
    views = frame["views"][ok].to_numpy(dtype=np.float64)
    shape = (len(users), len(cat.items))
    weights = sp.csr_matrix((confidence(orders, views), (r, c)), shape=shape, dtype=np.float32)
    bought = sp.csr_matrix(((orders > 0).astype(np.float32), (r, c)), shape=shape, dtype=np.float32)
    weights.sum_duplicates()
    bought.sum_duplicates()
    return weights, bought


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
@dataclass
class ItemItem:
    """Cosine item-item similarity with shrinkage, top ``neighbours`` per item."""

    similarity: sp.csr_matrix

    @classmethod
    def fit(cls, weights: sp.csr_matrix, *, neighbours: int = 50, shrink: float = 10.0) -> ItemItem:
        binary = (weights > 0).astype(np.float32)
        co = (binary.T @ binary).tocsr()
        n = np.asarray(binary.sum(axis=0)).ravel()
        co = co.tocoo()
        vals = co.data / (np.sqrt(n[co.row] * n[co.col]) + shrink)
        sim = sp.csr_matrix((vals.astype(np.float32), (co.row, co.col)), shape=co.shape)
        return cls(_top_per_row(sim, neighbours))

    def score(self, weights: sp.csr_matrix) -> np.ndarray:
        return np.asarray((weights @ self.similarity).todense(), dtype=np.float32)


@dataclass
class ALS:
    """Implicit ALS item factors; user factors recomputed with the exact ALS user step."""

    item_factors: np.ndarray
    regularization: float
    alpha: float

    @classmethod
    def fit(
        cls,
        weights: sp.csr_matrix,
        *,
        factors: int = 32,
        iterations: int = 15,
        regularization: float = 0.05,
        alpha: float = 10.0,
        seed: int = 0,
    ) -> ALS:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        try:
            from implicit.als import AlternatingLeastSquares
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - depends on the environment
            raise ModelError("method 'als' needs the `implicit` package (pip install implicit)") from None
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=factors,
                iterations=iterations,
                regularization=regularization,
                alpha=alpha,
                random_state=seed,
                use_gpu=False,
            )
            model.fit(weights.astype(np.float32).tocsr(), show_progress=False)
        return cls(np.asarray(model.item_factors, dtype=np.float32), regularization, alpha)

    def user_factors(self, weights: sp.csr_matrix) -> np.ndarray:
        y = self.item_factors.astype(np.float64)
        f = y.shape[1]
        yty = y.T @ y
        out = np.zeros((weights.shape[0], f))
        reg = self.regularization * np.eye(f)
        for u in range(weights.shape[0]):
            lo, hi = weights.indptr[u], weights.indptr[u + 1]
            if lo == hi:
                continue
            idx = weights.indices[lo:hi]
            conf = self.alpha * weights.data[lo:hi].astype(np.float64)  # c - 1
            yu = y[idx]
            a = yty + (yu.T * conf) @ yu + reg
            b = (yu.T * (conf + 1.0)).sum(axis=1)
            out[u] = np.linalg.solve(a, b)
        return out

    def score(self, weights: sp.csr_matrix) -> np.ndarray:
        return (self.user_factors(weights) @ self.item_factors.T.astype(np.float64)).astype(np.float32)


def _row_scaled(m: np.ndarray) -> np.ndarray:
    """Each row divided by its maximum (rows without a positive entry stay zero)."""
    top = m.max(axis=1, keepdims=True)
    return np.divide(m, top, out=np.zeros_like(m, dtype=np.float64), where=top > 0)


@dataclass
class Hybrid:
    """Item-item scores blended with the customer's own purchases (buy again) and what their
    segment buys: ``item + w_buy · buy_again + w_seg · segment``, each scaled to its row maximum.
    The weights are chosen on a validation split (:func:`select_method`)."""

    item: ItemItem
    buy_again: float
    segment: float
    segment_popularity: np.ndarray  # segments × items (distinct buyers), row 0 = no segment
    segments: np.ndarray  # segment names, "" first

    def score_with(self, weights: sp.csr_matrix, bought: sp.csr_matrix, seg_rows: np.ndarray) -> np.ndarray:
        blended = _row_scaled(self.item.score(weights))
        if self.buy_again:
            blended += self.buy_again * _row_scaled(np.asarray(bought.todense(), dtype=np.float64))
        if self.segment:
            blended += self.segment * _row_scaled(self.segment_popularity[seg_rows])
        return blended.astype(np.float32)


@dataclass
class _History:
    """The training side of one time split: who bought what before ``end``, and the baselines."""

    end: date
    users: list[str]
    weights: sp.csr_matrix
    bought: sp.csr_matrix
    exclude: sp.csr_matrix
    popularity: np.ndarray
    recent: np.ndarray
    segments: np.ndarray  # names, "" first (customers in no segment)
    segment_of: np.ndarray  # per user, the row of ``segment_popularity``
    segment_popularity: np.ndarray

    def baseline(self, name: str, rows: np.ndarray) -> np.ndarray:
        """A baseline's scores for the users at ``rows`` (popularity breaks every tie)."""
        tie = 1e-6 * self.popularity / max(float(self.popularity.max()), 1.0)
        if name == "popularity":
            return np.tile(self.popularity, (len(rows), 1))
        if name == "popularity_recent":
            return np.tile(self.recent + tie, (len(rows), 1))
        if name == "buy_again":
            return np.asarray(self.bought[rows].todense(), dtype=np.float64) + tie
        if name == "segment_popularity":
            return self.segment_popularity[self.segment_of[rows]] + tie
        raise ValueError(name)


def _history(ctx: StoreContext, cat: Catalogue, end: date) -> _History:
    frame = interactions_expr(ctx, end=end).to_pandas()
    if frame.empty:
        raise DataError(f"no purchases or product views before {end}: nothing to learn from")
    users = sorted(frame["customer_id"].unique().tolist())
    weights, bought = _matrix(frame, users, cat)
    popularity = np.asarray(bought.sum(axis=0)).ravel().astype(np.float64)
    recent_start = end - timedelta(days=RECENT_DAYS)
    recent_frame = interactions_expr(ctx, start=recent_start, end=end, views=False).to_pandas()
    _, recent_bought = _matrix(recent_frame, users, cat)
    recent = np.asarray(recent_bought.sum(axis=0)).ravel().astype(np.float64)
    ids = ibis.memtable({"customer_id": users}, schema={"customer_id": "string"})
    keys = pd.DataFrame({"customer_id": users}).merge(
        _group_keys(ctx, ids).to_pandas()[["customer_id", "seg"]], on="customer_id", how="left"
    )
    names = np.array(["", *sorted(keys["seg"].dropna().unique().tolist())], dtype=object)
    row_of = {n: i for i, n in enumerate(names)}
    segment_of = keys["seg"].map(lambda v: row_of.get(v, 0) if isinstance(v, str) else 0).to_numpy(np.int64)
    membership = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float64), (segment_of, np.arange(len(users)))),
        shape=(len(names), len(users)),
    )
    segment_popularity = np.asarray((membership @ bought).todense(), dtype=np.float64)
    segment_popularity[0] = popularity  # customers in no segment: the whole base
    return _History(
        end, users, weights, bought, _exclusions(bought, cat), popularity, recent, names, segment_of,
        segment_popularity,
    )


def _top_per_row(m: sp.csr_matrix, n: int) -> sp.csr_matrix:
    m = m.tocsr()
    rows, cols, vals = [], [], []
    for i in range(m.shape[0]):
        lo, hi = m.indptr[i], m.indptr[i + 1]
        if hi - lo > n:
            keep = np.argpartition(-m.data[lo:hi], n)[:n] + lo
        else:
            keep = np.arange(lo, hi)
        rows.append(np.full(len(keep), i))
        cols.append(m.indices[keep])
        vals.append(m.data[keep])
    if not rows:
        return m
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=m.shape)


def _fit_model(method: str, history: _History, params: dict[str, Any]) -> ItemItem | ALS | Hybrid:
    if method == "item":
        return ItemItem.fit(history.weights, **params)
    if method == "als":
        return ALS.fit(history.weights, **params)
    if method == "hybrid":
        blend = {k: params[k] for k in ("buy_again", "segment") if k in params}
        rest = {k: v for k, v in params.items() if k not in blend}
        return Hybrid(
            ItemItem.fit(history.weights, **rest),
            float(blend.get("buy_again", 0.5)),
            float(blend.get("segment", 0.25)),
            history.segment_popularity.astype(np.float32),
            history.segments,
        )
    raise ModelError(f"unknown recommender method {method!r} (use {', '.join(METHODS)} or auto)")


def _model_scores(model: ItemItem | ALS | Hybrid, history: _History, rows: np.ndarray) -> np.ndarray:
    tie = 1e-6 * history.popularity / max(float(history.popularity.max()), 1.0)
    if isinstance(model, Hybrid):
        return model.score_with(history.weights[rows], history.bought[rows], history.segment_of[rows]) + tie
    return model.score(history.weights[rows]) + tie


def top_k(scores: np.ndarray, exclude: sp.csr_matrix | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``k`` best items per row, skipping excluded (non-zero) entries.

    Ties are broken by item order so results are deterministic.
    """
    scores = scores.astype(np.float64, copy=True)
    if exclude is not None and exclude.nnz:
        ex = exclude.tocoo()
        scores[ex.row, ex.col] = -np.inf
    k = min(k, scores.shape[1])
    part = (
        np.argpartition(-scores, k - 1, axis=1)[:, :k]
        if k < scores.shape[1]
        else np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    )
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(scores, idx, axis=1)


# ---------------------------------------------------------------------------------------------
# fit / persist / load
# ---------------------------------------------------------------------------------------------
@dataclass
class FitResult:
    """What ``fit_recommender`` stored."""

    version: int
    method: str
    as_of: date
    customers: int
    products: int
    interactions: int
    path: str
    params: dict[str, Any] = field(default_factory=dict)


def _default_as_of(ctx: StoreContext) -> date:
    tx = ctx.table("transactions")
    last = tx.ordered_at.max().execute()
    if last is None or last != last:
        raise DataError("no transactions stored yet: ingest transactions before fitting a recommender")
    return last.date() + timedelta(days=1)


def default_method() -> str:
    """``auto``: item-item, ALS or the hybrid, whichever ranks best on a validation split."""
    return "auto"


def fit_recommender(
    ctx: StoreContext,
    *,
    method: str | None = None,
    as_of: date | None = None,
    params: dict[str, Any] | None = None,
    progress: ProgressCallback = noop_progress,
) -> FitResult:
    """Fit the recommender on interactions before ``as_of`` and store it as a new version.

    ``method="auto"`` (the default) chooses by :func:`select_method` on the 90 days before
    ``as_of``, then fits the winner on everything before ``as_of``; with too little history for
    that split it fits item-item."""
    method = method or default_method()
    if method not in (*METHODS, "auto"):
        raise ModelError(f"unknown recommender method {method!r} (use {', '.join(METHODS)} or auto)")
    params = dict(params or {})
    progress("recommend fit", 0, 3)
    as_of = as_of or _default_as_of(ctx)
    cat = load_catalogue(ctx)
    selection: Selection | None = None
    if method == "auto":
        try:
            selection = select_method(ctx, as_of, params=params, cat=cat)
            method, params = selection.method, dict(selection.params)
        except DataError:  # too little history for a validation split: the simplest model
            method = "item"
    history = _history(ctx, cat, as_of)
    progress("recommend fit", 1, 3)
    model = _fit_model(method, history, params)
    progress("recommend fit", 2, 3)
    with ctx.ops.session() as s:
        # Reserved (committed) before the files are written, so a concurrent fit gets another folder.
        version = next_version(s, KIND)
    folder = ctx.root / "models" / KIND / f"v{version}"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "items.npy", cat.items.astype(str), allow_pickle=False)
    np.save(folder / "repeatable.npy", cat.repeatable, allow_pickle=False)
    np.save(folder / "popularity.npy", history.popularity.astype(np.float32), allow_pickle=False)
    if isinstance(model, Hybrid):
        sp.save_npz(folder / "similarity.npz", model.item.similarity)
        np.save(folder / "segment_popularity.npy", model.segment_popularity, allow_pickle=False)
        np.save(folder / "segments.npy", model.segments.astype(str), allow_pickle=False)
    elif isinstance(model, ItemItem):
        sp.save_npz(folder / "similarity.npz", model.similarity)
    else:
        np.save(folder / "item_factors.npy", model.item_factors, allow_pickle=False)
        params.setdefault("regularization", model.regularization)
        params.setdefault("alpha", model.alpha)
    meta: dict[str, Any] = {
        "method": method,
        "path": str(folder.relative_to(ctx.root)),
        "customers": len(history.users),
        "products": int(len(cat.items)),
        "interactions": int(history.weights.nnz),
        "view_weight": VIEW_WEIGHT,
        "params": params,
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if selection is not None:
        meta["selection"] = asdict(selection)
    if method == "als":
        import implicit

        meta["implicit_version"] = implicit.__version__
    with ctx.ops.session() as s:
        s.add(ModelVersion(kind=KIND, version=version, as_of=as_of, params=_plain(meta)))
    progress("recommend fit", 3, 3)
    return FitResult(
        version,
        method,
        as_of,
        len(history.users),
        int(len(cat.items)),
        int(history.weights.nnz),
        meta["path"],
        params,
    )


def _plain(value: Any) -> Any:
    """``value`` with dates as ISO strings (ModelVersion params are JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


@dataclass
class LoadedRecommender:
    """A stored recommender version ready to score."""

    version: int
    method: str
    as_of: date
    catalogue: Catalogue
    popularity: np.ndarray
    model: ItemItem | ALS | Hybrid


def load_recommender(ctx: StoreContext, version: int | None = None) -> LoadedRecommender | None:
    """The stored recommender ``version`` (default: latest), or ``None`` if none was fitted."""
    with ctx.ops.session() as s:
        q = select(ModelVersion).where(ModelVersion.kind == KIND)
        q = q.where(ModelVersion.version == version) if version else q.order_by(ModelVersion.version.desc())
        row = s.scalars(q.limit(1)).first()
        if row is None:
            if version:
                raise ModelError(f"no recommender version {version}")
            return None
        meta, ver, as_of = dict(row.params), row.version, row.as_of
    folder = ctx.root / meta["path"]
    if not folder.is_dir():
        raise ModelError(f"recommender v{ver}: artefacts missing under {folder}; run `recommend fit` again")
    cat = Catalogue(
        np.load(folder / "items.npy", allow_pickle=False),
        np.load(folder / "repeatable.npy", allow_pickle=False),
    )
    popularity = np.load(folder / "popularity.npy", allow_pickle=False)
    model: ItemItem | ALS | Hybrid
    if meta["method"] == "item":
        model = ItemItem(sp.load_npz(folder / "similarity.npz").tocsr())
    elif meta["method"] == "hybrid":
        p = meta.get("params", {})
        model = Hybrid(
            ItemItem(sp.load_npz(folder / "similarity.npz").tocsr()),
            float(p["buy_again"]),
            float(p["segment"]),
            np.load(folder / "segment_popularity.npy", allow_pickle=False),
            np.load(folder / "segments.npy", allow_pickle=False).astype(object),
        )
    else:
        p = meta.get("params", {})
        model = ALS(
            np.load(folder / "item_factors.npy", allow_pickle=False),
            float(p.get("regularization", 0.05)),
            float(p.get("alpha", 10.0)),
        )
    return LoadedRecommender(ver, meta["method"], as_of, cat, popularity, model)


# ---------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------
def _exclusions(bought: sp.csr_matrix, cat: Catalogue) -> sp.csr_matrix:
    """Bought items of non-repeatable products (cannot be recommended again)."""
    mask = sp.diags((~cat.repeatable).astype(np.float32))
    return (bought @ mask).tocsr()


def _group_keys(ctx: StoreContext, ids: ir.Table) -> ir.Table:
    """customer_id → (seg, region) used for cold-start popularity."""
    from micromarketing.segments import MEMBERS_TABLE

    customers = ctx.table("customers")
    region = customers.city if "city" in customers.columns else ibis.literal(None, type="string")
    keys = customers.select("customer_id", region=region.cast("string"))
    seg: ir.Table | None = None
    if ctx.warehouse.has_table(MEMBERS_TABLE):
        m = ctx.table(MEMBERS_TABLE)
        latest = m.group_by("segment").aggregate(_as_of=m.as_of.max(), _v=m.version.max())
        cur = m.join(latest, [m.segment == latest.segment, m.as_of == latest._as_of, m.version == latest._v])
        cur = cur.select("segment", "customer_id")
        sizes = cur.group_by("segment").aggregate(_n=cur.count())
        ranked = cur.join(sizes, "segment").mutate(
            _r=ibis.row_number().over(group_by="customer_id", order_by=[ibis.asc("_n"), ibis.asc("segment")])
        )
        seg = ranked.filter(ranked._r == 0).select(_sid="customer_id", seg="segment")
    elif ctx.warehouse.has_table("profiles") and "age_band" in ctx.table("profiles").columns:
        p = ctx.table("profiles")
        seg = p.select(_sid=p.customer_id, seg=p.age_band.cast("string"))
    if seg is not None:
        keys = keys.left_join(seg, keys.customer_id == seg._sid).drop("_sid")
    else:
        keys = keys.mutate(seg=ibis.literal(None, type="string"))
    if ids is not None:
        want = ids.select(_cid=ids.customer_id.cast("string")).distinct()
        keys = keys.join(want, keys.customer_id == want._cid).drop("_cid")
    return keys


def cold_start(
    ctx: StoreContext, customer_ids: list[str], k: int, *, as_of: date | None = None
) -> pd.DataFrame:
    """Popular products in each customer's (segment, region), backing off to segment, region, all.

    Popularity is the number of distinct buyers (before ``as_of``); a group counts only with at
    least :data:`MIN_GROUP_BUYERS` buyers.  Ties go to the smaller product id.
    """
    columns = ["customer_id", "rank", "product_id", "score"]
    if not customer_ids:
        return pd.DataFrame(columns=columns)
    ids = ibis.memtable({"customer_id": customer_ids}, schema={"customer_id": "string"})
    keys = pd.DataFrame({"customer_id": customer_ids}).merge(
        _group_keys(ctx, ids).to_pandas(), on="customer_id", how="left"
    )
    tx = ctx.table("transactions")
    tx = tx.filter(tx.product_id.notnull())
    if as_of is not None:
        tx = tx.filter(tx.ordered_at < midnight_utc(as_of))
    buyers = tx.select("customer_id", "product_id").distinct()
    joined = buyers.join(_group_keys(ctx, None), "customer_id")  # type: ignore[arg-type]
    levels: list[list[str]] = [["seg", "region"], ["seg"], ["region"], []]
    pending = keys
    parts = []
    for cols in levels:
        if pending.empty:
            break
        if cols:
            ready = pending.dropna(subset=cols)
            if ready.empty:
                continue
            wanted = ibis.memtable(ready[cols].drop_duplicates().reset_index(drop=True))
            scoped = joined.join(wanted, cols)
            sizes = scoped.group_by(cols).aggregate(buyers=scoped.customer_id.nunique())
            big = sizes.filter(sizes.buyers >= MIN_GROUP_BUYERS).select(*cols)
            scoped = scoped.join(big, cols)
        else:
            ready, scoped = pending, joined
        counts = scoped.group_by([*cols, "product_id"]).aggregate(n=scoped.customer_id.nunique())
        ranked = counts.mutate(
            rank=ibis.row_number().over(
                group_by=cols or None, order_by=[ibis.desc("n"), ibis.asc("product_id")]
            )
            + 1
        )
        top = ranked.filter(ranked["rank"] <= k).to_pandas()
        if top.empty:
            continue
        served = ready.merge(top, on=cols, how="inner") if cols else ready.merge(top, how="cross")
        parts.append(served[["customer_id", "rank", "product_id", "n"]].rename(columns={"n": "score"}))
        pending = pending[~pending["customer_id"].isin(set(served["customer_id"]))]
    if not parts:
        return pd.DataFrame(columns=columns)
    out = pd.concat(parts, ignore_index=True)
    out["rank"] = out["rank"].astype("int64")
    out["score"] = out["score"].astype("float64")
    return out.sort_values(["customer_id", "rank"]).reset_index(drop=True)


def _segment_rows(ctx: StoreContext, model: Hybrid, users: list[str]) -> np.ndarray:
    """Each user's row of the hybrid's segment popularity (0: none, or a segment new since the fit)."""
    ids = ibis.memtable({"customer_id": users}, schema={"customer_id": "string"})
    keys = pd.DataFrame({"customer_id": users}).merge(
        _group_keys(ctx, ids).to_pandas()[["customer_id", "seg"]], on="customer_id", how="left"
    )
    row_of = {str(n): i for i, n in enumerate(model.segments)}
    return keys["seg"].map(lambda v: row_of.get(v, 0) if isinstance(v, str) else 0).to_numpy(np.int64)


def recommend_for(
    ctx: StoreContext,
    customer_ids: list[str] | tuple[str, ...],
    k: int = 5,
    *,
    version: int | None = None,
    as_of: date | None = None,
) -> pd.DataFrame:
    """Top-``k`` products per customer: DataFrame(customer_id, rank, product_id, score).

    Uses the latest fitted recommender (or ``version``) with each customer's current history
    (interactions before ``as_of``, default: all stored), never repeats a bought non-repeatable
    product, and serves cold-start customers from segment/region popularity.  Without a fitted
    recommender every customer gets the cold-start ranking.  Unknown ids get no rows.
    """
    ids = [str(c) for c in customer_ids]
    if not ids or k <= 0:
        return pd.DataFrame(columns=["customer_id", "rank", "product_id", "score"])
    rec = load_recommender(ctx, version)
    if rec is None:
        return cold_start(ctx, ids, k, as_of=as_of)
    uniq = list(dict.fromkeys(ids))
    frame = interactions_expr(
        ctx, end=as_of, customers=ibis.memtable({"customer_id": uniq}, schema={"customer_id": "string"})
    ).to_pandas()
    warm = sorted(set(frame["customer_id"]))
    parts = []
    if warm:
        weights, bought = _matrix(frame, warm, rec.catalogue)
        exclude = _exclusions(bought, rec.catalogue)
        seg_rows = _segment_rows(ctx, rec.model, warm) if isinstance(rec.model, Hybrid) else None
        for lo in range(0, len(warm), _BATCH):
            hi = min(lo + _BATCH, len(warm))
            if isinstance(rec.model, Hybrid):
                scores = rec.model.score_with(weights[lo:hi], bought[lo:hi], seg_rows[lo:hi])  # type: ignore[index]
            else:
                scores = rec.model.score(weights[lo:hi])
            # popularity breaks ties (and fills rows whose history has no neighbours)
            scores = scores + 1e-6 * (rec.popularity / max(float(rec.popularity.max()), 1.0))
            idx, val = top_k(scores, exclude[lo:hi], k)
            n = hi - lo
            parts.append(
                pd.DataFrame(
                    {
                        "customer_id": np.repeat(np.array(warm[lo:hi], dtype=object), idx.shape[1]),
                        "rank": np.tile(np.arange(1, idx.shape[1] + 1), n),
                        "product_id": rec.catalogue.items[idx.ravel()].astype(object),
                        "score": val.ravel(),
                    }
                )
            )
    warm_set = set(warm)
    cold = [c for c in uniq if c not in warm_set]
    if cold:
        known = ctx.table("customers")
        asked = ibis.memtable({"customer_id": cold}, schema={"customer_id": "string"})
        present = known.join(asked, "customer_id").select("customer_id").to_pandas()["customer_id"]
        known_ids = set(present)
        cold = [c for c in cold if c in known_ids]
        if cold:
            parts.append(cold_start(ctx, cold, k, as_of=as_of))
    if not parts:
        return pd.DataFrame(columns=["customer_id", "rank", "product_id", "score"])
    out = pd.concat(parts, ignore_index=True)
    order = {c: i for i, c in enumerate(uniq)}
    out["_o"] = out["customer_id"].map(order)
    out = out.sort_values(["_o", "rank"]).drop(columns="_o").reset_index(drop=True)
    out["rank"] = out["rank"].astype("int64")
    out["score"] = out["score"].astype("float64")
    return out


# ---------------------------------------------------------------------------------------------
# offline evaluation and model selection
# ---------------------------------------------------------------------------------------------
@dataclass
class Metrics:
    """Ranking quality at ``k`` averaged over the evaluated customers, and catalogue coverage."""

    precision: float
    recall: float
    ndcg: float
    coverage: float


@dataclass
class Selection:
    """Which method (and blend) won on the validation split, and every candidate's NDCG@k there."""

    method: str
    params: dict[str, Any]
    validation_start: date
    validation_end: date
    validation_ndcg: dict[str, float]


@dataclass
class Evaluation:
    """The model against every baseline on the same split, users and exclusions."""

    method: str
    params: dict[str, Any]
    k: int
    cutoff: date
    as_of: date
    train_customers: int
    test_customers: int
    model: Metrics
    baselines: dict[str, Metrics]
    selection: Selection | None = None

    @property
    def popularity(self) -> Metrics:
        return self.baselines["popularity"]

    def best_baseline(self) -> str:
        """The baseline with the highest NDCG@k."""
        return max(self.baselines, key=lambda name: self.baselines[name].ndcg)

    def lift(self, baseline: str | None = None) -> dict[str, float]:
        """Model / baseline ratio per metric (default: the best baseline)."""
        m, b = asdict(self.model), asdict(self.baselines[baseline or self.best_baseline()])
        return {key: (m[key] / b[key] if b[key] else float("inf")) for key in m}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["best_baseline"] = self.best_baseline()
        d["lift"] = self.lift()
        return d


def ranking_metrics(recommended: np.ndarray, relevant: list[set[int]], k: int, n_items: int) -> Metrics:
    """precision@k, recall@k (hits / relevant), NDCG@k (binary gains) and coverage of ``n_items``."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    p = r = g = 0.0
    for row, rel in zip(recommended, relevant, strict=True):
        hits = np.array([i in rel for i in row[:k]], dtype=float)
        p += hits.sum() / k
        r += hits.sum() / len(rel)
        g += float((hits * disc[: len(hits)]).sum()) / float(disc[: min(len(rel), k)].sum())
    n = max(len(relevant), 1)
    coverage = len(np.unique(recommended[:, :k])) / n_items if n_items else 0.0
    return Metrics(float(p / n), float(r / n), float(g / n), float(coverage))


def _test_cases(
    ctx: StoreContext, history: _History, cat: Catalogue, start: date, end: date
) -> tuple[np.ndarray, list[set[int]]]:
    """Users with training history who bought something recommendable in [start, end)."""
    test = interactions_expr(ctx, start=start, end=end, views=False).to_pandas()
    test = test[test["orders"] > 0]
    uidx = {u: i for i, u in enumerate(history.users)}
    iidx = cat.index
    ex = history.exclude.tolil()
    relevant: dict[int, set[int]] = {}
    for cid, pid in zip(test["customer_id"], test["product_id"], strict=True):
        u, i = uidx.get(cid), iidx.get(pid)
        if u is None or i is None or ex[u, i]:
            continue
        relevant.setdefault(u, set()).add(i)
    rows = np.array(sorted(relevant), dtype=np.int64)
    if len(rows) == 0:
        raise DataError(f"no customer with history before {start} bought anything recommendable before {end}")
    return rows, [relevant[u] for u in rows]


Scorer = Any  # Callable[[dict[str, np.ndarray]], np.ndarray]: batch components → scores


def _rank_all(
    history: _History,
    rows: np.ndarray,
    relevant: list[set[int]],
    k: int,
    n_items: int,
    components: Any,
    scorers: dict[str, Scorer],
) -> dict[str, Metrics]:
    """Metrics of every scorer, computing the shared score components once per batch."""
    recs: dict[str, list[np.ndarray]] = {name: [] for name in scorers}
    for lo in range(0, len(rows), _BATCH):
        batch = rows[lo : lo + _BATCH]
        parts = components(batch)
        for name, scorer in scorers.items():
            recs[name].append(top_k(scorer(parts), history.exclude[batch], k)[0])
    return {name: ranking_metrics(np.vstack(r), relevant, k, n_items) for name, r in recs.items()}


def _baseline_scorers(history: _History) -> tuple[Any, dict[str, Scorer]]:
    def components(batch: np.ndarray) -> dict[str, np.ndarray]:
        return {name: history.baseline(name, batch) for name in BASELINES}

    return components, {name: (lambda parts, n=name: parts[n]) for name in BASELINES}


def select_method(
    ctx: StoreContext,
    end: date,
    *,
    k: int = 10,
    holdout_days: int = 90,
    params: dict[str, Any] | None = None,
    cat: Catalogue | None = None,
) -> Selection:
    """Choose among item-item, ALS and item-item blended with buy-again and segment popularity
    (every weight pair of :data:`HYBRID_GRID`) by NDCG@k on the ``holdout_days`` before ``end``,
    training on what came before them.  ``end`` is the start of the test period in an evaluation
    (the test period never takes part) and the fit's as-of date in ``recommend fit``."""
    cat = cat or load_catalogue(ctx)
    start = end - timedelta(days=holdout_days)
    history = _history(ctx, cat, start)
    rows, relevant = _test_cases(ctx, history, cat, start, end)
    base = dict(params or {})
    item = ItemItem.fit(history.weights, **base)
    als: ALS | None
    try:
        als = ALS.fit(history.weights)
    except ModelError:  # implicit not installed
        als = None

    tie = 1e-6 * history.popularity / max(float(history.popularity.max()), 1.0)

    def components(batch: np.ndarray) -> dict[str, np.ndarray]:
        parts = {
            "item": _row_scaled(item.score(history.weights[batch])),
            "buy_again": _row_scaled(np.asarray(history.bought[batch].todense(), dtype=np.float64)),
            "segment": _row_scaled(history.segment_popularity[history.segment_of[batch]]),
            "tie": np.tile(tie, (len(batch), 1)),
        }
        if als is not None:
            parts["als"] = als.score(history.weights[batch]).astype(np.float64)
        return parts

    scorers: dict[str, Scorer] = {"item": lambda p: p["item"] + p["tie"]}
    if als is not None:
        scorers["als"] = lambda p: p["als"] + p["tie"]
    for b, g in HYBRID_GRID:
        if b or g:
            scorers[f"hybrid:{b}:{g}"] = lambda p, b=b, g=g: (
                p["item"] + b * p["buy_again"] + g * p["segment"] + p["tie"]
            )
    metrics = _rank_all(history, rows, relevant, k, len(cat.items), components, scorers)
    ndcg = {name: m.ndcg for name, m in metrics.items()}
    best = max(ndcg, key=lambda name: ndcg[name])  # ties: the first (simplest) candidate
    if best.startswith("hybrid:"):
        _, b, g = best.split(":")
        method, chosen = "hybrid", {**base, "buy_again": float(b), "segment": float(g)}
    else:
        method, chosen = best, (base if best == "item" else {})
    return Selection(method, chosen, start, end, ndcg)


def evaluate(
    ctx: StoreContext,
    *,
    method: str | None = None,
    k: int = 10,
    holdout_days: int = 90,
    as_of: date | None = None,
    params: dict[str, Any] | None = None,
    progress: ProgressCallback = noop_progress,
) -> Evaluation:
    """Time-based offline evaluation of ``method`` against every baseline in the same run.

    Interactions before ``as_of - holdout_days`` train the model and the baselines (popularity
    all time and recent, buy-again, popularity within the customer's segment); each customer
    with training interactions who buys in the holdout window is a test case, relevant items
    being the products bought there that may be recommended (bought non-repeatable items are
    excluded for all).  ``method="auto"`` (the default) picks the method by
    :func:`select_method` on the period before the test window.  Nothing is stored.
    """
    method = method or default_method()
    as_of = as_of or _default_as_of(ctx)
    cutoff = as_of - timedelta(days=holdout_days)
    progress("evaluate", 0, 3)
    cat = load_catalogue(ctx)
    selection = None
    chosen = dict(params or {})
    if method == "auto":
        selection = select_method(ctx, cutoff, k=k, holdout_days=holdout_days, params=params, cat=cat)
        method, chosen = selection.method, selection.params
    history = _history(ctx, cat, cutoff)
    rows, relevant = _test_cases(ctx, history, cat, cutoff, as_of)
    progress("evaluate", 1, 3)
    model = _fit_model(method, history, chosen)
    components, scorers = _baseline_scorers(history)

    def with_model(batch: np.ndarray) -> dict[str, np.ndarray]:
        return {**components(batch), "model": _model_scores(model, history, batch)}

    metrics = _rank_all(
        history, rows, relevant, k, len(cat.items), with_model, {**scorers, "model": lambda p: p["model"]}
    )
    progress("evaluate", 3, 3)
    model_metrics = metrics.pop("model")
    return Evaluation(
        method, chosen, k, cutoff, as_of, len(history.users), len(rows), model_metrics, metrics, selection
    )


def recommender_info(ctx: StoreContext) -> list[dict[str, Any]]:
    """Every stored recommender version with its metadata (newest first)."""
    with ctx.ops.session() as s:
        rows = s.scalars(
            select(ModelVersion).where(ModelVersion.kind == KIND).order_by(ModelVersion.version.desc())
        )
        return [{"version": r.version, "as_of": r.as_of, **dict(r.params)} for r in rows]

