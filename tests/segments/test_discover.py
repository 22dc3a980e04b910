"""Discovery end to end on generated data: generate → ingest → profile → discover → compare with truth.

The generated population has six planted segments (``truth.csv``); discovery must recover them
(adjusted Rand index ≥ 0.9) with k chosen automatically, save them as versioned ``discovered``
segments with personas, replace rather than pile up on a re-run, warn about small segments and
leave customers without orders out.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from datetime import date

import ibis
import numpy as np
import pandas as pd
import pytest
import typer
from sklearn.metrics import adjusted_rand_score
from typer.testing import CliRunner

from micromarketing import Workspace
from micromarketing.datasets import CLUSTER_FEATURES, generate
from micromarketing.errors import DataError
from micromarketing.segments import MEMBERS_TABLE, Segments
from micromarketing.segments.discover import ClusterModel, discover_segments, fit_clusters, fit_sample
from micromarketing.segments.features import Standardiser, clustering_features, load_features
from micromarketing.segments.personas import cluster_facts

CUSTOMERS = 3000
SEED = 11
PROSPECT = "PROSPECT1"
UNKNOWN = "NOAGE1"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """Generated data ingested and profiled, plus one customer without orders; closed, to be copied.

    Built once per test session even under pytest-xdist: the workers share the parent of their
    base temp directory, and an exclusive lock makes the first one build while the others wait.
    """
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "discover-pristine"
    shared.mkdir(exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "done").exists():
            _build(shared)
            (shared / "done").write_text("ok")
    truth = pd.read_csv(shared / "data" / "truth.csv", dtype=str).set_index("customer_id")["segment"]
    return shared, truth, tmp_path_factory.mktemp("discover")


def _build(base):
    data = generate(base / "data", customers=CUSTOMERS, seed=SEED)
    ws = Workspace.init(base / "pristine")
    for kind in ("products", "stores", "customers", "transactions", "events"):
        ws.ingest(kind, data.paths[kind])
    planted = ws.profile()
    assert planted.with_orders == planted.customers == CUSTOMERS  # the generator gives everyone orders
    prospect = pd.DataFrame(
        {
            "customer_id": [PROSPECT],
            "birth_date": [date(1990, 1, 1)],
            "signup_date": [date(2026, 6, 1)],
            "lat": [48.85],
            "lon": [2.35],
        }
    )
    ws.warehouse.upsert("customers", ibis.memtable(prospect))
    # A buyer with no birth date and no coordinates: age and distance are imputed with the mean.
    ws.warehouse.upsert("customers", ibis.memtable(pd.DataFrame({"customer_id": [UNKNOWN]})))
    order = {
        "order_id": ["OX1"],
        "line_no": [1],
        "customer_id": [UNKNOWN],
        "ordered_at": [pd.Timestamp("2026-06-01T10:00Z")],
        "category": ["fashion"],
        "amount": [50.0],
        "currency": ["EUR"],
        "channel": ["online"],
    }
    ws.warehouse.upsert("transactions", ibis.memtable(pd.DataFrame(order)))
    ws.profile()
    ws.close()


def _copy(pristine, name):
    shared, _, mine = pristine
    shutil.copytree(shared / "pristine", mine / name)
    return Workspace.open(mine / name)


@pytest.fixture(scope="module")
def discovered(pristine):
    ws = _copy(pristine, "main")
    result = discover_segments(ws, seed=0)
    yield ws, result
    ws.close()


def _labels(ws, names):
    segs = Segments(ws)
    frames = [segs.member_table(n).to_pandas().assign(segment=n) for n in names]
    return pd.concat(frames).set_index("customer_id")["segment"]


def test_recovers_planted_segments(discovered, pristine):
    ws, result = discovered
    _, truth, _ = pristine
    assert result.k_mode == "auto" and result.k == 6
    chosen = next(s for s in result.scores if s.k == result.k)
    assert chosen.stability >= 0.98
    found = _labels(ws, [s.name for s in result.segments])
    assert found.index.is_unique and len(found) == CUSTOMERS + 1  # + the buyer without age/location
    assert UNKNOWN in found.index
    found = found[found.index.isin(truth.index)]
    ari = adjusted_rand_score(truth.loc[found.index], found)
    assert ari >= 0.9, ari


def test_features_match_the_generator_feature_list(discovered):
    ws, _ = discovered
    fm = load_features(ws)
    assert sorted(fm.names) == sorted(CLUSTER_FEATURES)
    assert fm.as_of == date(2026, 7, 1)
    # Spend shares add up to one for every buyer; store share and e-mail counts are sane.
    shares = fm.values[:, [i for i, n in enumerate(fm.names) if n.startswith("share_")]]
    assert abs(shares.sum(axis=1) - 1).max() < 1e-9
    store = fm.values[:, fm.names.index("store_order_share")]
    assert store.min() >= 0 and store.max() <= 1
    row = list(fm.customer_ids).index(UNKNOWN)
    for name in ("age", "store_distance_km"):
        col = fm.values[:, fm.names.index(name)]
        others = col[[i for i in range(fm.n) if i != row]]
        assert col[row] == pytest.approx(others.mean())
    assert fm.values[row, fm.names.index("share_fashion")] == 1.0


def _numpy_standardised(fm) -> np.ndarray:
    """log1p of the heavy-tailed columns, centred and scaled over every row: computed here, in numpy."""
    x = fm.values.copy()
    for j, spec in enumerate(fm.specs):
        if spec.log:
            x[:, j] = np.log1p(np.clip(x[:, j], 0, None))
    return (x - x.mean(axis=0)) / x.std(axis=0)


def test_warehouse_assignment_and_facts_equal_numpy_on_the_whole_matrix(discovered):
    """The SQL assignment is the nearest centre (ties to the lower index) for every customer, and
    the personas' facts computed by grouped aggregates equal numpy's over the full matrix."""
    ws, _ = discovered
    fm = load_features(ws)  # the whole matrix, pulled here only to check the warehouse's answers
    z = _numpy_standardised(fm)
    with clustering_features(ws) as cf:
        standardiser = Standardiser.fit(cf)
        raw = fm.values.copy()
        for j, spec in enumerate(fm.specs):
            if spec.log:
                raw[:, j] = np.log1p(np.clip(raw[:, j], 0, None))
        np.testing.assert_allclose(standardiser.mean, raw.mean(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(standardiser.scale, raw.std(axis=0), rtol=1e-12)
        fitted = fit_clusters(fit_sample(cf, standardiser, 0, 10_000), 4, seed=0)
        # A duplicated centre: every customer nearest to it is at the same distance from both
        # copies, and must go to the first.
        centers = np.vstack([fitted, fitted[1]])
        scored = ClusterModel(standardiser, centers).assigned(cf.table)["customer_id", "cluster"]
        got = scored.order_by("customer_id").to_pyarrow()
        assert got.column("customer_id").to_pylist() == fm.customer_ids.tolist()
        labels = np.asarray(got.column("cluster").to_pylist())
        distances = ((z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        expected = distances.argmin(axis=1)  # numpy's argmin takes the first of equal minima
        assert (labels == expected).all(), int((labels != expected).sum())
        assert (labels == 1).sum() > 0 and (labels == 4).sum() == 0
        facts = cluster_facts(ws, cf, scored, standardiser, len(centers))
    monetary = fm.values[:, fm.names.index("monetary")]
    interval, clv = fm.descriptive["order_interval_days"], fm.descriptive["clv"]
    for f in facts:
        rows = labels == f.cluster
        assert f.size == rows.sum() and f.share == pytest.approx(rows.mean(), rel=1e-12)
        assert f.revenue == pytest.approx(monetary[rows].sum(), rel=1e-9)
        if not rows.any():
            assert f.avg_clv is None and f.order_interval_days is None
            continue
        assert f.revenue_share == pytest.approx(monetary[rows].sum() / monetary.sum(), rel=1e-9)
        known = interval[rows][~np.isnan(interval[rows])]
        assert f.order_interval_days == pytest.approx(np.median(known), rel=1e-12)
        assert f.base_order_interval_days == pytest.approx(np.nanmedian(interval), rel=1e-12)
        if np.isnan(clv[rows]).all():
            assert f.avg_clv is None
        else:
            assert f.avg_clv == pytest.approx(np.nanmean(clv[rows]), rel=1e-9)
        for j, name in enumerate(fm.names):
            fact = f.numeric[name]
            assert fact.mean == pytest.approx(fm.values[rows, j].mean(), rel=1e-9, abs=1e-12), name
            assert fact.median == pytest.approx(np.median(fm.values[rows, j]), rel=1e-12, abs=1e-12), name
            assert fact.base_mean == pytest.approx(fm.values[:, j].mean(), rel=1e-9, abs=1e-12), name
            assert fact.base_median == pytest.approx(np.median(fm.values[:, j]), rel=1e-12, abs=1e-12)
            assert fact.std_diff == pytest.approx(z[rows, j].mean(), rel=1e-9, abs=1e-9), name
    # Category shares: counted in the warehouse, checked here with pandas on the profiles.
    bands = ws.table("profiles").select("customer_id", "age_band").to_pandas().set_index("customer_id")
    frame = pd.DataFrame({"cluster": labels}, index=fm.customer_ids).join(bands)
    for f in facts:
        if not f.size:
            continue
        shares = frame[frame.cluster == f.cluster].age_band.value_counts() / f.size
        got_shares = {fact.value: fact.share for fact in f.categorical["age_band"]}
        assert got_shares == pytest.approx(shares.to_dict(), rel=1e-12)


def test_fit_sample_is_the_smallest_md5_of_seed_and_customer_id(discovered):
    """The sample rule, recomputed with hashlib: the warehouse picks exactly those customers."""
    ws, _ = discovered
    fm = load_features(ws)
    z = _numpy_standardised(fm)
    with clustering_features(ws) as cf:
        standardiser = Standardiser.fit(cf)
        for seed in (0, 3):
            sample = fit_sample(cf, standardiser, seed, 500)
            digests = [hashlib.md5(f"{seed}:{cid}".encode()).hexdigest() for cid in fm.customer_ids]
            chosen = np.sort(np.argsort(np.array(digests), kind="stable")[:500])  # ids are sorted
            np.testing.assert_allclose(sample, z[chosen].astype(np.float32), rtol=1e-5, atol=1e-5)
        everyone = fit_sample(cf, standardiser, 0, cf.n)
    assert everyone.shape == (fm.n, len(fm.names))
    np.testing.assert_allclose(everyone, z.astype(np.float32), rtol=1e-5, atol=1e-5)


def test_customers_without_orders_are_left_out(discovered):
    ws, result = discovered
    assert result.excluded_no_orders == 1
    assert result.customers == CUSTOMERS + 1
    members = ws.table(MEMBERS_TABLE)
    assert members.filter(members.customer_id == PROSPECT).count().execute() == 0


def test_segments_are_saved_with_personas(discovered):
    ws, result = discovered
    infos = {i.name: i for i in Segments(ws).list()}
    assert sorted(infos) == [f"discovered_{i:02d}" for i in range(1, 7)]
    for seg in result.segments:
        info = infos[seg.name]
        assert info.kind == "discovered" and info.version == 1
        assert info.size == seg.size == seg.persona.size
        assert info.description == seg.persona.name
        persona = info.details["persona"]
        assert persona["name"] and persona["description"] and persona["traits"]
        assert info.details["discovery"]["k"] == 6
    assert sum(s.size for s in result.segments) == CUSTOMERS + 1
    # Personas name the planted behaviour.
    names = " | ".join(s.persona.name.lower() for s in result.segments)
    for word in ("young", "lapsed", "new", "store regulars", "bargain hunters", "eco"):
        assert word in names, names
    eco = next(s.persona for s in result.segments if "eco" in s.persona.name.lower())
    assert "25–34" in eco.tagline and "high e-mail engagement" in eco.tagline
    assert "25–34" in eco.description and f"{eco.size:,} customers" in eco.description
    shares = sum(s.persona.revenue_share for s in result.segments)
    assert shares == pytest.approx(1.0, abs=1e-3)


def test_rerun_replaces_the_set_and_retires_leftovers(pristine):
    ws = _copy(pristine, "rerun")
    try:
        first = discover_segments(ws, k=6, seed=0)
        biggest = set(Segments(ws).member_table(first.segments[0].name).customer_id.execute())
        second = discover_segments(ws, k=6, seed=0)
        assert [(s.name, s.version) for s in second.segments] == [(s.name, 2) for s in first.segments]
        assert [s.persona.name for s in second.segments] == [s.persona.name for s in first.segments]
        assert len(Segments(ws).list()) == 6
        # Fewer clusters: each new cluster keeps the name of the old one it overlaps most with,
        # and the names left over get a retired version without members.
        third = discover_segments(ws, k=4, seed=0)
        infos = {i.name: i for i in Segments(ws).list()}
        assert len(infos) == 6
        assert len(third.retired) == 2
        for name in third.retired:
            assert infos[name].details["retired"] is True and infos[name].version == 3
        for seg in third.segments:
            assert infos[seg.name].version == 3 and infos[seg.name].size == seg.size
        # The biggest new cluster contains the biggest old one's members under the same name.
        # (Re-materialising on the same as-of date replaces that date's rows, so compare with
        # the members read after the first run.)
        new = set(Segments(ws).member_table(first.segments[0].name).customer_id.execute())
        assert len(biggest & new) / len(biggest) > 0.9
    finally:
        ws.close()


def test_a_run_writes_every_cluster_and_retirement_in_one_members_write(pristine, monkeypatch):
    """The clusters' members and the emptied retired segments go to the warehouse in one
    ``replace_rows`` call (the real one, recorded on the way), and the guards recorded with each
    version judge the finished set: the same power warning, over the live segments, for all."""
    ws = _copy(pristine, "one-write")
    try:
        discover_segments(ws, k=5, seed=0)
        writes: list[dict] = []
        replace_rows = ws.warehouse.replace_rows

        def recorded(name, rows, match):
            if name == MEMBERS_TABLE:
                writes.append(match)
            return replace_rows(name, rows, match)

        monkeypatch.setattr(ws.warehouse, "replace_rows", recorded)
        result = discover_segments(ws, k=3, seed=0)
        monkeypatch.undo()
        assert len(result.retired) == 2
        written = [s.name for s in result.segments] + result.retired
        assert writes == [{"segment": written, "as_of": result.as_of}]
        t = ws.table(MEMBERS_TABLE)
        on_date = t.filter(t.as_of == result.as_of).group_by(["segment", "version"])
        on_date = on_date.aggregate(n=ibis._.count())
        stored = {(r["segment"], r["version"]): r["n"] for r in on_date.to_pyarrow().to_pylist()}
        assert stored == {(s.name, s.version): s.size for s in result.segments}  # retired: emptied
        assert sum(stored.values()) == result.customers
        infos = {i.name: i for i in Segments(ws).list()}
        power = [[w for w in infos[n].details["warnings"] if "active segments" in w]
                 for n in written]
        assert power[0] and power[0][0].startswith("3 of 3 active segments"), power[0]
        assert all(p == power[0] for p in power), power
        for name in result.retired:
            assert infos[name].size is None and infos[name].details["last_size"] == 0
    finally:
        ws.close()


def test_a_later_run_with_more_clusters_takes_retired_names_as_new_versions(pristine):
    ws = _copy(pristine, "unretire")
    try:
        discover_segments(ws, k=5, seed=0)
        fewer = discover_segments(ws, k=3, seed=0)
        more = discover_segments(ws, k=5, seed=0)
        assert {s.name for s in more.segments} == {s.name for s in fewer.segments} | set(fewer.retired)
        infos = {i.name: i for i in Segments(ws).list()}
        for name in fewer.retired:  # retired at version 2, back with members at version 3
            assert infos[name].version == 3 and not infos[name].details.get("retired")
            assert infos[name].size == next(s.size for s in more.segments if s.name == name)
        assert len(infos) == 5 and more.retired == []
    finally:
        ws.close()


def test_small_segments_warn(pristine):
    ws = _copy(pristine, "small")
    try:
        result = discover_segments(ws, k=3, min_size=1200, seed=0, save=False)
        small = [s for s in result.segments if s.size < 1200]
        assert small
        for s in small:
            assert any("minimum practical size 1200" in w for w in s.warnings)
        assert all(not s.warnings for s in result.segments if s.size >= 1200)
        assert Segments(ws).list() == []  # dry run saves nothing
    finally:
        ws.close()


def test_deterministic_and_bad_input(discovered):
    ws, result = discovered
    again = discover_segments(ws, features=["behaviour", "value"], k=3, seed=5, save=False)
    once_more = discover_segments(ws, features=["behaviour", "value"], k=3, seed=5, save=False)
    assert [s.size for s in again.segments] == [s.size for s in once_more.segments]
    assert again.features == [
        "recency_days",
        "frequency",
        "monetary",
        "avg_order_value",
        "tenure_days",
        "store_order_share",
        "email_opens_90d",
        "email_clicks_90d",
    ]
    with pytest.raises(DataError, match="unknown feature 'recency'"):
        discover_segments(ws, features=["recency"], save=False)
    with pytest.raises(DataError, match="--k must be"):
        discover_segments(ws, k="many", save=False)


def test_no_profiles_is_a_user_error(workspace):
    with pytest.raises(DataError, match="profile"):
        discover_segments(workspace)


def test_cli_prints_personas_and_json(pristine):
    from micromarketing.cli.segment_discover import discover

    ws = _copy(pristine, "cli")
    ws.close()  # the CLI opens the workspace itself
    app = typer.Typer()
    app.command()(discover)
    app.command("noop")(lambda: None)  # two commands: Typer keeps the command name
    runner = CliRunner()
    out = runner.invoke(app, ["discover", "-w", str(ws.root), "--k", "6", "--dry-run", "--json"])
    assert out.exit_code == 0, out.output
    import json

    payload = json.loads(out.stdout)
    assert payload["k"] == 6 and len(payload["segments"]) == 6 and payload["saved"] is False
    assert all(s["persona"]["traits"] for s in payload["segments"])
    table = runner.invoke(app, ["discover", "-w", str(ws.root), "--k", "6", "--dry-run"])
    assert table.exit_code == 0, table.output
    assert "Personas" in table.stdout and "discovered_01" in table.stdout and "Choosing k" not in table.stdout
    bad = runner.invoke(app, ["discover", "-w", str(ws.root), "--features", "nope"])
    assert bad.exit_code == 2 and "unknown feature 'nope'" in bad.output


def _single_population(n: int, rng: np.random.Generator) -> np.ndarray:
    """Skewed, discrete, correlated RFM-like features and Dirichlet category shares: one population."""
    lam = rng.gamma(1.5, 2.0, n)
    freq = rng.poisson(lam * 2) + 1
    recency = rng.exponential(90, n) / (1 + 0.1 * freq)
    spend = np.exp(rng.normal(3.5, 0.6, n) + 0.1 * np.log(freq))
    x = np.column_stack([np.log1p(freq), np.log1p(recency), np.log1p(spend), rng.dirichlet([2, 2, 2, 2], n)])
    return (x - x.mean(axis=0)) / x.std(axis=0)


def test_no_structure_is_an_answer():
    """One population gives k = 1 (no partition is reproduced by independent subsamples); a
    mixture of well-separated segments does not."""
    from micromarketing.segments.discover import select_k

    rng = np.random.default_rng(0)
    k, scores = select_k(_single_population(4000, rng), seed=0)
    assert k == 1 and max(s.stability for s in scores) < 0.98
    centers = rng.normal(0, 2.5, (5, 7))
    mixture = centers[rng.integers(0, 5, 4000)] + rng.normal(0, 1, (4000, 7))
    k, _ = select_k((mixture - mixture.mean(axis=0)) / mixture.std(axis=0), seed=0)
    assert k > 1
