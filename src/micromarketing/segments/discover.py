"""Discovered micro-segments: cluster customers on behaviour, value and lifestyle, save them with personas.

What it owns
------------
:func:`discover_segments` — the whole run: compute the feature table in the warehouse
(:func:`micromarketing.segments.features.clustering_features`), standardise it, choose k, fit
k-means, assign every customer, describe each cluster with a persona
(:mod:`micromarketing.segments.personas`) and save the clusters through the segment store as
kind ``discovered``.  :func:`select_k` and :func:`fit_clusters` are the model steps, usable on
any matrix; :func:`fit_sample` pulls the matrix they fit on, and :class:`ClusterModel` (with
:class:`~micromarketing.segments.features.Standardiser`) turns a fitted model into an Ibis
expression that assigns every customer where the rows are.

What runs where
---------------
The same code runs on DuckDB and on Spark; only the model fit happens on the driver.

* In the warehouse, per customer: the feature table (computed once into a temporary table),
  the imputation of missing values and the standardiser's mean and scale (one-row aggregates
  over *all* clustered customers), the choice of the fit sample, the assignment (squared
  distance to each centre, centres as literals, argmin with ties to the lower index; computed
  once into a temporary table), cluster sizes, the personas' facts (grouped means, exact
  medians, category counts), the overlap with the previous set (for the names) and the
  memberships, written from the assignment: every cluster's and every retired segment's in one
  write of the members table (:meth:`Segments.save_discovered_set`).
* On the driver: one deterministic sample of at most :data:`FIT_SAMPLE` standardised rows,
  on which k is chosen and k-means fitted, and results of k (or k × categories) rows.

The fit sample is the :data:`FIT_SAMPLE` customers with the smallest MD5 digest of
``"<seed>:<customer_id>"`` (every customer when there are no more), pulled in customer_id order:
MD5 is computed alike by DuckDB and Spark and its hex digests compare alike, so both engines
select the same customers and fit the same centres; the digest is uniform, so the sample is a
uniform random one, and a different seed draws a different one.
The standardiser is computed over all clustered customers rather than on the sample: an
aggregate costs one scan, is exact, and keeps the scale (hence every distance and assignment)
independent of which customers were sampled.

Method
------
* Standardisation: heavy-tailed money and count features go through ``log1p``; then every column
  is centred and scaled to unit variance over the clustered customers.
* Fitting: scikit-learn ``KMeans`` (k-means++, several restarts, fixed seed) on the fit sample;
  every customer is then assigned to the nearest centre in the warehouse, so a million
  customers cost one pass of distance computations where they are stored.
* Choosing k (``k="auto"``) over :data:`K_RANGE` by **stability, then silhouette**: for each k,
  k-means is fitted on :data:`REPLICATES` independent subsamples (drawn from the fit sample) and
  each model labels a common evaluation sample; the mean pairwise adjusted Rand index of those
  labelings is the stability (Ben-Hur et al. 2002; Lange et al. 2004: a k that matches real
  structure is reproduced, an arbitrary split of a blob is not).  Among the k whose stability is at
  least :data:`STABLE` and whose smallest cluster (estimated on the evaluation sample) reaches the
  minimum practical size, the one with the highest silhouette (on the same evaluation sample)
  wins; if stable k exist but all have a cluster below the minimum size, the most stable
  k.  Silhouette alone keeps rising past the true k on our data, because splitting a segment along
  its noisy category-share dimensions also scores well; stability rejects those splits.  Every
  score is returned and printed, and the run is deterministic for a given seed.
* "No structure" is an answer (k = 1): when *no* k reaches :data:`STABLE`, independent
  subsamples do not reproduce any partition, which is what k-means does on one population
  (it still cuts a blob, but each subsample cuts it differently).  Then nothing is saved and the
  result says there are no stable micro-segments.  Measured on a simulated single population
  (skewed, discrete, correlated RFM features and Dirichlet category shares): the most stable k
  reached 0.89, while a mixture of six segments reached 0.998 for k = 2…6.  Silhouette is no
  guide here: k-means on a single skewed population scores higher silhouettes than on a
  Gaussian-copula reference with the same marginals, so a silhouette gap test would find
  structure where there is none.
* Names: the clusters are saved as ``<prefix>_01`` … ``<prefix>_NN``.  Re-running discovery
  replaces the previous set with the same prefix: each new cluster takes the name of the old
  cluster it shares most customers with (Hungarian matching on the overlap), which gets a new
  version; old names left over are retired (a new version marked ``retired`` with no members),
  and a later run that needs a name again gives it a new version with members.  So re-runs
  version the set instead of piling up segments.
* Guards: clusters smaller than the minimum practical size (``--min-size``, default the
  workspace's ``segments.min_size``) are still saved, with the warning of
  :func:`micromarketing.segments.guards.min_size_warning` (and auto-k prefers a k without them).
  Once the whole set is saved, the overlap and power guards run over every stored segment
  (:meth:`Segments.overlap`) and their warnings are returned with the result.

Customers without orders before the as-of date are not clustered (see
:mod:`micromarketing.segments.features` for why); the result reports how many.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np

from micromarketing.errors import DataError
from micromarketing.profiles.currency import single_currency
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.segments import guards
from micromarketing.segments.definitions import NAME_RE, DiscoveredMembers, Segments
from micromarketing.segments.features import ClusteringFeatures, Standardiser, clustering_features
from micromarketing.segments.personas import ClusterFacts, Persona, build_personas, cluster_facts
from micromarketing.segments.results import DiscoveredSegment, DiscoveryResult, KScore
from micromarketing.store.context import StoreContext

K_RANGE = (2, 12)
FIT_SAMPLE = 30_000  # customers pulled to the driver: k is chosen and k-means fitted on them
SELECT_SAMPLE = 3_000  # subsample size for each stability fit
EVAL_SAMPLE = 3_000  # common evaluation sample for stability and silhouette
REPLICATES = 3  # stability fits per k
STABLE = 0.98  # mean pairwise ARI between subsample fits a k must reach to be preferred
N_INIT = 8  # k-means++ restarts per fit (fewer lets local optima pass for instability)
DEFAULT_PREFIX = "discovered"
CRITERION = (
    f"stability then silhouette: among k with stability (mean ARI between k-means fits on {REPLICATES} "
    f"independent subsamples) >= {STABLE} and smallest cluster >= the minimum size, the highest "
    "silhouette; k = 1 (no stable micro-segments) when no k reaches that stability"
)


@dataclass
class ClusterModel:
    """Standardisation and k-means centres: enough to assign any customer to a cluster."""

    standardiser: Standardiser
    centers: np.ndarray  # in standardised units, one row per cluster

    def assigned(self, table: ir.Table) -> ir.Table:
        """``table`` (with the standardiser's features) plus ``cluster``: the index of the nearest
        centre by squared Euclidean distance in standardised units, ties to the lower index.

        An expression the warehouse evaluates where the rows are; the centres are literals.
        """
        z_cols = self.standardiser.columns(table)
        with_z = table.mutate(**{f"_z{j}": expr for j, expr in enumerate(z_cols.values())})
        z = [with_z[f"_z{j}"] for j in range(len(z_cols))]
        distances = {}
        for c, center in enumerate(self.centers):
            terms = [(zj - float(v)) * (zj - float(v)) for zj, v in zip(z, center, strict=True)]
            distances[f"_d{c}"] = sum(terms[1:], terms[0])
        with_d = with_z.mutate(**distances)
        d = [with_d[f"_d{c}"] for c in range(len(self.centers))]
        nearest = ibis.least(*d)
        cluster = ibis.cases(*[(dc == nearest, c) for c, dc in enumerate(d)]).cast("int32")
        return with_d.select(*table.columns, cluster=cluster)

    def to_dict(self) -> dict[str, Any]:
        centers = [[round(float(v), 6) for v in c] for c in self.centers]
        return {**self.standardiser.to_dict(), "centers": centers}


def fit_sample(cf: ClusteringFeatures, standardiser: Standardiser, seed: int, size: int) -> np.ndarray:
    """The standardised features (float32, customer_id order) of at most ``size`` customers.

    Every customer when there are no more; otherwise those with the smallest MD5 of
    ``"<seed>:<customer_id>"``, chosen in the warehouse (see the module docstring).  Only these
    rows come to the driver.
    """
    z = standardiser.standardised(cf.table)
    if cf.n > size:
        key = (ibis.literal(f"{seed}:") + z.customer_id).hexdigest("md5")
        z = z.mutate(_key=key).order_by(["_key", "customer_id"]).limit(size).drop("_key")
    data = z.order_by("customer_id").to_pyarrow()
    columns = [np.asarray(data.column(s.name).to_numpy(zero_copy_only=False), dtype=np.float64)
               for s in standardiser.specs]
    return np.column_stack(columns).astype(np.float32)


def select_k(
    x: np.ndarray,
    *,
    k_range: tuple[int, int] = K_RANGE,
    seed: int = 0,
    min_size: int = 1,
    population: int | None = None,
    progress: ProgressCallback = noop_progress,
) -> tuple[int, list[KScore]]:
    """Choose k by stability then silhouette (see the module docstring); returns (k, scores),
    k = 1 when no candidate is stable.

    For each k, :data:`REPLICATES` k-means models are fitted on independent subsamples of
    :data:`SELECT_SAMPLE` rows and label a common evaluation sample; stability is the mean
    pairwise adjusted Rand index of those labelings, silhouette that of the first labeling.
    ``x`` may be a sample of a ``population`` of customers (default: ``x`` is all of them): the
    smallest cluster's size and the largest k tried (a tenth of the customers) refer to it.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    n = len(x)
    population = population or n
    lo, hi = k_range
    hi = max(lo, min(hi, population // 10))
    rng = np.random.default_rng(seed)
    eval_idx = rng.choice(n, min(n, EVAL_SAMPLE), replace=False)
    x_eval = x[eval_idx]
    subsamples = [rng.choice(n, min(n, SELECT_SAMPLE), replace=False) for _ in range(REPLICATES)]
    scores: list[KScore] = []
    ks = list(range(lo, hi + 1))
    with _single_thread():
        for i, k in enumerate(ks):
            labels = [
                KMeans(k, n_init=N_INIT, random_state=seed + r).fit(x[sub]).predict(x_eval)
                for r, sub in enumerate(subsamples)
            ]
            pairs = [
                adjusted_rand_score(labels[a], labels[b])
                for a in range(len(labels))
                for b in range(a + 1, len(labels))
            ]
            stability = float(np.mean(pairs))
            first = labels[0]
            sil = float(silhouette_score(x_eval, first)) if len(set(first.tolist())) > 1 else -1.0
            smallest = int(round(np.bincount(first, minlength=k).min() * population / len(x_eval)))
            scores.append(
                KScore(k=k, stability=round(stability, 4), silhouette=round(sil, 4), smallest=smallest,
                       eligible=smallest >= min_size)
            )
            progress("choose k", i + 1, len(ks))
    stable = [s for s in scores if s.stability >= STABLE]
    if not stable:
        return 1, scores  # no partition is reproduced: one population
    eligible = [s for s in stable if s.eligible]
    if eligible:
        best = max(eligible, key=lambda s: (s.silhouette, -s.k))
    else:
        best = max(stable, key=lambda s: (s.stability, s.silhouette, -s.k))
    return best.k, scores


def fit_clusters(x: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """k-means centres (standardised units) fitted on a sample of at most FIT_SAMPLE rows."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    sample = x if len(x) <= FIT_SAMPLE else x[np.sort(rng.choice(len(x), FIT_SAMPLE, replace=False))]
    with _single_thread():
        model = KMeans(k, n_init=N_INIT, random_state=seed).fit(sample)
    return np.asarray(model.cluster_centers_, dtype=np.float64)


def discover_segments(
    ctx: StoreContext,
    *,
    features: list[str] | None = None,
    k: int | str = "auto",
    min_size: int | None = None,
    seed: int = 0,
    prefix: str = DEFAULT_PREFIX,
    save: bool = True,
    progress: ProgressCallback = noop_progress,
) -> DiscoveryResult:
    """Cluster the customers with orders and save each cluster as a discovered segment with a persona.

    ``features`` names features or groups (default: all; see
    :func:`micromarketing.segments.features.resolve_features`); ``k`` is ``"auto"`` (chosen by
    :func:`select_k`) or a number; ``min_size`` is the minimum practical segment size (default
    the workspace setting).  With ``save=False`` nothing is written (a dry run).  Runs on the
    profiles' as-of date.  Deterministic for a given ``seed``.
    """
    t0 = time.perf_counter()
    segs = Segments(ctx)
    min_size = int(min_size if min_size is not None else segs.min_size)
    if min_size < 1:
        raise DataError("--min-size must be at least 1")
    k_mode = "auto" if str(k).lower() == "auto" else "fixed"
    if k_mode == "fixed":
        try:
            k = int(k)
        except (TypeError, ValueError):
            raise DataError(f"--k must be 'auto' or a whole number, not {k!r}") from None
        if k < 2:
            raise DataError("--k must be at least 2")
    if not _valid_prefix(prefix):
        raise DataError(f"invalid prefix {prefix!r}: use letters, digits, '_' or '-', starting with a letter")
    progress("discover", 0, 5)
    with ExitStack() as temporaries:  # the warehouse's temp tables live until the run ends
        cf = temporaries.enter_context(clustering_features(ctx, features))
        return _discover(ctx, segs, cf, temporaries, k, k_mode, min_size, seed, prefix, save, progress, t0)


def _discover(
    ctx: StoreContext,
    segs: Segments,
    cf: ClusteringFeatures,
    temporaries: ExitStack,
    k: Any,
    k_mode: str,
    min_size: int,
    seed: int,
    prefix: str,
    save: bool,
    progress: ProgressCallback,
    t0: float,
) -> DiscoveryResult:
    """The run of :func:`discover_segments` once the feature table is in the warehouse."""
    steps = 5
    timings = {"features": time.perf_counter() - t0}
    if cf.n < 2 or (k_mode == "fixed" and cf.n < int(k)):
        raise DataError(
            f"only {cf.n} customers with orders before {cf.as_of}: too few to cluster"
            + (f" into {k}" if k_mode == "fixed" else "")
        )
    progress("discover", 1, steps)

    t = time.perf_counter()
    standardiser = Standardiser.fit(cf)
    x = fit_sample(cf, standardiser, seed, FIT_SAMPLE)
    scores: list[KScore] = []
    if k_mode == "auto":
        k, scores = select_k(x, seed=seed, min_size=min_size, population=cf.n, progress=progress)
    timings["choose_k"] = time.perf_counter() - t
    if k == 1:
        return _no_structure(cf, len(x), prefix, scores, min_size, seed, timings, t0, progress)
    progress("discover", 2, steps)

    t = time.perf_counter()
    k = int(k)
    centers = fit_clusters(x, k, seed=seed)
    # Every customer's nearest centre, computed once into a temp table that the sizes, facts,
    # overlap and membership queries read; then relabelled largest cluster first.
    fitted = ClusterModel(standardiser, centers).assigned(cf.table)
    nearest = temporaries.enter_context(ctx.warehouse.temporary("clusters", fitted["customer_id", "cluster"]))
    order = _order_clusters(_sizes(nearest, k), centers)
    model = ClusterModel(standardiser, centers[np.argsort(order)])
    relabel = {old: int(new) for old, new in enumerate(order)}
    labels = nearest.select("customer_id", cluster=nearest.cluster.substitute(relabel).cast("int32"))
    timings["fit_assign"] = time.perf_counter() - t
    progress("discover", 3, steps)

    t = time.perf_counter()
    facts = cluster_facts(ctx, cf, labels, standardiser, k)
    personas = build_personas(facts, currency=single_currency(ctx.table("transactions"), cf.as_of))
    timings["personas"] = time.perf_counter() - t
    progress("discover", 4, steps)

    t = time.perf_counter()
    result = DiscoveryResult(
        as_of=cf.as_of,
        prefix=prefix,
        k=k,
        k_mode=k_mode,
        criterion=CRITERION if k_mode == "auto" else "fixed k",
        scores=scores,
        features=cf.names,
        customers=cf.n,
        excluded_no_orders=cf.excluded_no_orders,
        min_size=min_size,
        seed=seed,
        fitted_on=len(x),
        segments=[],
        saved=save,
    )
    if save:
        _save(ctx, segs, result, cf, labels, facts, personas, model)
    else:
        for c, persona in enumerate(personas):
            warning = guards.min_size_warning(f"{prefix}_{c + 1:02d}", persona.size, min_size)
            result.segments.append(
                DiscoveredSegment(
                    name=f"{prefix}_{c + 1:02d}", version=0, cluster=c, size=persona.size, persona=persona,
                    warnings=[warning] if warning else [],
                )
            )
        result.warnings = _unique(w for s in result.segments for w in s.warnings)
    timings["save"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    result.timings = {k_: round(v, 3) for k_, v in timings.items()}
    progress("discover", steps, steps)
    return result


def _no_structure(
    cf: ClusteringFeatures,
    fitted_on: int,
    prefix: str,
    scores: list[KScore],
    min_size: int,
    seed: int,
    timings: dict[str, float],
    t0: float,
    progress: ProgressCallback,
) -> DiscoveryResult:
    """The answer "k = 1": no partition is reproduced by independent subsamples; nothing is saved."""
    timings["total"] = time.perf_counter() - t0
    progress("discover", 5, 5)
    best = max(scores, key=lambda s: s.stability)
    return DiscoveryResult(
        as_of=cf.as_of,
        prefix=prefix,
        k=1,
        k_mode="auto",
        criterion=CRITERION,
        scores=scores,
        features=cf.names,
        customers=cf.n,
        excluded_no_orders=cf.excluded_no_orders,
        min_size=min_size,
        seed=seed,
        fitted_on=fitted_on,
        segments=[],
        warnings=[
            f"no stable micro-segments: the customers look like one population (the most stable "
            f"split, k={best.k}, is reproduced by independent subsamples with a mean ARI of "
            f"{best.stability:.2f}, below {STABLE}); nothing was saved"
        ],
        timings={k_: round(v, 3) for k_, v in timings.items()},
        saved=False,
    )


# ------------------------------------------------------------------------------------------------
def _save(
    ctx: StoreContext,
    segs: Segments,
    result: DiscoveryResult,
    cf: ClusteringFeatures,
    labels: ir.Table,
    facts: list[ClusterFacts],
    personas: list[Persona],
    model: ClusterModel,
) -> None:
    prefix, k = result.prefix, result.k
    previous, earlier = _earlier_runs(segs, prefix)
    names = _match_names(_overlap(segs, previous, labels, k), previous, k, prefix)
    run = {
        "prefix": prefix,
        "k": k,
        "k_mode": result.k_mode,
        "criterion": result.criterion,
        "scores": [s.model_dump() for s in result.scores],
        "features": cf.names,
        "seed": result.seed,
        "min_size": result.min_size,
        "customers": cf.n,
        "excluded_no_orders": cf.excluded_no_orders,
        "fitted_on": result.fitted_on,
        "model": model.to_dict(),
    }
    retired = sorted(set(previous) - set(names.values()))
    saved = segs.save_discovered_set(
        [
            DiscoveredMembers(
                names[c],
                labels.filter(labels.cluster == c).select("customer_id"),
                description=personas[c].name,
                details={"persona": personas[c].to_dict(), "discovery": {**run, "cluster": c}},
                replace=names[c] in earlier,  # of the previous set, or retired by an earlier run
            )
            for c in range(k)
        ]
        + [
            DiscoveredMembers(
                old,
                [],
                description="(retired by a later discovery run)",
                details={"retired": True, "discovery": {"prefix": prefix, "retired": True}},
                replace=True,
            )
            for old in retired
        ],
        as_of=cf.as_of,
    )
    for c, mat in enumerate(saved[:k]):
        # the run's --min-size, which may differ from the workspace setting the store judges by
        mine = guards.min_size_warning(mat.segment, mat.size, result.min_size)
        result.segments.append(
            DiscoveredSegment(
                name=mat.segment, version=mat.version, cluster=c, size=mat.size, persona=personas[c],
                warnings=[mine] if mine else [],
            )
        )
    result.retired = retired
    result.warnings = _unique([w for d in result.segments for w in d.warnings] + segs.overlap().warnings)
    ctx.audit(
        "segment.discover",
        prefix,
        {
            "k": k,
            "segments": [s.name for s in result.segments],
            "retired": result.retired,
            "as_of": cf.as_of.isoformat(),
        },
    )


def _earlier_runs(segs: Segments, prefix: str) -> tuple[list[str], set[str]]:
    """The live (not retired) discovered segments of an earlier run with this prefix, and the
    names of all its discovered segments, retired ones included."""
    live, every = [], set()
    for info in segs.list():
        disc = info.details.get("discovery") or {}
        if info.kind == "discovered" and disc.get("prefix") == prefix:
            every.add(info.name)
            if not info.details.get("retired"):
                live.append(info.name)
    return live, every


def _sizes(assigned: ir.Table, k: int) -> np.ndarray:
    """Customers per cluster of an assignment, counted in the warehouse."""
    sizes = np.zeros(k, dtype=np.int64)
    for row in assigned.group_by("cluster").aggregate(n=assigned.count()).to_pyarrow().to_pylist():
        sizes[int(row["cluster"])] = int(row["n"])
    return sizes


def _overlap(segs: Segments, previous: list[str], labels: ir.Table, k: int) -> np.ndarray:
    """Customers shared by each new cluster (rows) and each previous segment (columns), by one
    join and count in the warehouse."""
    overlap = np.zeros((k, len(previous)))
    old = segs.latest_members(previous)
    if old is None:
        return overlap
    column = {name: j for j, name in enumerate(previous)}
    old = old.select(_old="segment", _old_id="customer_id")
    joined = labels.join(old, labels.customer_id == old._old_id)
    counts = joined.group_by("cluster", "_old").aggregate(n=joined.count())
    for row in counts.to_pyarrow().to_pylist():
        overlap[int(row["cluster"]), column[row["_old"]]] = int(row["n"])
    return overlap


def _match_names(overlap: np.ndarray, previous: list[str], k: int, prefix: str) -> dict[int, str]:
    """Cluster -> segment name: inherit the name of the previous cluster sharing most customers."""
    names: dict[int, str] = {}
    if previous:
        from scipy.optimize import linear_sum_assignment

        new_idx, old_idx = linear_sum_assignment(-overlap)
        for c, j in zip(new_idx, old_idx, strict=True):
            if overlap[c, j] > 0:
                names[int(c)] = previous[int(j)]
    taken = set(names.values()) | set(previous)
    counter = 1
    for c in range(k):
        if c in names:
            continue
        while f"{prefix}_{counter:02d}" in taken:
            counter += 1
        names[c] = f"{prefix}_{counter:02d}"
        taken.add(names[c])
    return names


def _order_clusters(sizes: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """old label -> new label, largest cluster first (ties by centre coordinates): deterministic."""
    keys = sorted(range(len(centers)), key=lambda c: (-int(sizes[c]), tuple(np.round(centers[c], 6))))
    order = np.empty(len(centers), dtype=np.int64)
    for new, old in enumerate(keys):
        order[old] = new
    return order


def _single_thread() -> Any:
    """Limit BLAS/OpenMP to one thread: on a small shared machine, k-means on a few thousand rows
    runs an order of magnitude faster single-threaded than with oversubscribed thread pools."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _valid_prefix(prefix: str) -> bool:
    return bool(NAME_RE.match(prefix or "")) and len(prefix) <= 60


def _unique(items: Any) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


__all__ = [
    "CRITERION",
    "ClusterModel",
    "DiscoveredSegment",
    "DiscoveryResult",
    "KScore",
    "discover_segments",
    "fit_clusters",
    "fit_sample",
    "select_k",
]
