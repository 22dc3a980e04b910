"""The planted segments are rediscoverable: KMeans on standardised features recovers truth.csv.

``customer_features`` computes the generator's CLUSTER_FEATURES with pandas straight from the
files, as the clustering code later does in SQL.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from micromarketing.datasets import CLUSTER_FEATURES, REFERENCE_DATE, SEGMENTS
from micromarketing.datasets.reference import CATEGORY_NAMES


def customer_features(out: Path) -> pd.DataFrame:
    """One row per customer (index customer_id) with the CLUSTER_FEATURES columns."""
    ref_day = pd.Timestamp(REFERENCE_DATE, tz="UTC")
    customers = pd.read_csv(out / "customers.csv", dtype=str).set_index("customer_id")
    stores = pd.read_csv(out / "stores.csv")
    tx = pd.read_csv(out / "transactions.csv", dtype={"customer_id": str, "order_id": str})
    tx["ordered_at"] = pd.to_datetime(tx["ordered_at"], utc=True)
    events = pd.read_json(out / "events.jsonl", lines=True, dtype={"customer_id": str})
    events["occurred_at"] = pd.to_datetime(events["occurred_at"], utc=True)

    orders = tx.groupby("order_id").agg(
        customer_id=("customer_id", "first"), ordered_at=("ordered_at", "first"),
        value=("amount", "sum"), channel=("channel", "first"),
    )
    per = orders.groupby("customer_id").agg(
        last=("ordered_at", "max"), frequency=("value", "size"), monetary=("value", "sum"),
        store_orders=("channel", lambda s: (s == "store").sum()),
    )
    f = pd.DataFrame(index=customers.index)
    f["recency_days"] = (ref_day - per["last"]).dt.days
    f["frequency"] = per["frequency"]
    f["monetary"] = per["monetary"]
    f["avg_order_value"] = per["monetary"] / per["frequency"]
    f["tenure_days"] = (pd.Timestamp(REFERENCE_DATE) - pd.to_datetime(customers["signup_date"])).dt.days
    f["age"] = (pd.Timestamp(REFERENCE_DATE) - pd.to_datetime(customers["birth_date"])).dt.days / 365.25
    lat = np.radians(customers["lat"].astype(float).to_numpy())[:, None]
    lon = np.radians(customers["lon"].astype(float).to_numpy())[:, None]
    slat, slon = np.radians(stores["lat"].to_numpy())[None, :], np.radians(stores["lon"].to_numpy())[None, :]
    h = np.sin((slat - lat) / 2) ** 2 + np.cos(lat) * np.cos(slat) * np.sin((slon - lon) / 2) ** 2
    f["store_distance_km"] = (2 * 6371.0088 * np.arcsin(np.sqrt(h))).min(axis=1)
    f["store_order_share"] = per["store_orders"] / per["frequency"]
    recent = events[events["occurred_at"] > ref_day + pd.Timedelta(days=1) - pd.Timedelta(days=90)]
    for kind, col in (("email_open", "email_opens_90d"), ("email_click", "email_clicks_90d")):
        f[col] = recent[recent["event_type"] == kind].groupby("customer_id").size()
    spend = tx.pivot_table(index="customer_id", columns="category", values="amount", aggfunc="sum")
    spend = spend.reindex(columns=list(CATEGORY_NAMES)).fillna(0.0)
    shares = spend.div(spend.sum(axis=1), axis=0)
    for cat in CATEGORY_NAMES:
        f[f"share_{cat}"] = shares[cat]
    f = f.fillna(0.0)
    return f[list(CLUSTER_FEATURES)]


def test_kmeans_recovers_planted_segments(segments_3000: Path) -> None:
    features = customer_features(segments_3000)
    assert list(features.columns) == list(CLUSTER_FEATURES)
    truth = pd.read_csv(segments_3000 / "truth.csv", dtype=str).set_index("customer_id")["segment"]
    truth = truth.loc[features.index]
    assert truth.value_counts().min() > 250  # every planted segment is sizeable, none a rare event
    x = StandardScaler().fit_transform(features.to_numpy())
    with threadpool_limits(1):  # 3,000 rows: threads only oversubscribe the 2 cores under pytest -n 2
        labels = KMeans(n_clusters=len(SEGMENTS), n_init=10, random_state=0).fit_predict(x)
    assert adjusted_rand_score(truth, labels) >= 0.9
