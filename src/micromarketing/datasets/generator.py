"""The demo-data generator: French customers, products, stores, transactions, events and consent
with a known set of planted micro-segments.

What it owns
------------
:func:`generate` writes ``customers``, ``products``, ``stores``, ``transactions``, ``consent`` and
``truth`` as CSV (or Parquet) and ``events`` as JSON lines (or Parquet when ``fmt="parquet"``: at
10M+ events Parquet is several times smaller and faster to ingest).  Columns match
:mod:`micromarketing.store.schema` exactly (``truth`` is extra and for tests only).  History runs
from 2021-07-01 to the reference date 2026-06-30 (:data:`REFERENCE_DATE`), so the same seed gives
byte-identical files.  Timestamps are UTC, written ``2026-06-30T14:05:09Z`` in CSV/JSONL.

Why it is hand-written
----------------------
Faker and per-row Python are far too slow for 1M customers / ~10M order lines, so everything is
vectorised numpy over blocks of :data:`BLOCK` customers, formatted with pyarrow compute and
streamed to pyarrow CSV/Parquet writers one chunk at a time (memory stays flat).  Each block has
its own random stream, ``numpy.random.default_rng([seed, block_index])``, so the output does not
depend on the chunk size (a chunk is a whole number of blocks).

Purchase process (buy-till-you-die)
-----------------------------------
Time unit: days.  Per customer: purchase rate ``lambda ~ Gamma(shape=r, rate=alpha)``; dropout
probability ``p ~ Beta(a, b)``; the customer is "born" with the first purchase (a few days after
signup), then buys at Poisson(lambda) times and after every repeat purchase drops out with probability
``p`` (BG/NBD, Fader-Hardie-Lee 2005).  Order value: ``nu ~ Gamma(shape=q, rate=gamma)`` per
customer and each order total ``z ~ Gamma(shape=p_gg, rate=nu)`` (Gamma-Gamma; mean order value
``p_gg * gamma / (q - 1)``).  An order is split into ``1 + Poisson(extra_lines)`` lines; the line
``amount`` is the line's share of ``z`` (so an order's amounts sum to ``z`` up to cent rounding),
the product is the one in the line's category whose price best fits the line value, and
``quantity = round(amount / price)`` (at least 1).

Generating parameters per segment (r, alpha in days; see :data:`SEGMENT_SPECS` for the rest):

====================  =====  ===  =====  ===  ===  ====  ===  =====  ==========================
segment               share   r   alpha   a    b   p_gg   q   gamma  mean order value (EUR)
====================  =====  ===  =====  ===  ===  ====  ===  =====  ==========================
mainstream            0.35    4    600    1   39    6    12   110    60
urban_young_eco       0.13    6    240    1   40    6    12   82.5   45
lapsed_high_value     0.13    6    600    1   99    8    15   437.5  250
local_store_regulars  0.13   10    280    1   99    8    15   43.75  25
bargain_hunters       0.13    6    180    1   40    6    15   46.67  20
new_high_potential    0.13    8    360    1    9   10    15   420    300
====================  =====  ===  =====  ===  ===  ====  ===  =====  ==========================

Every segment except ``lapsed_high_value`` is a pure BG/NBD / Gamma-Gamma process observed from
the first purchase to the reference date, so fitting the models on one segment's customers should
recover roughly its row of the table.  ``lapsed_high_value`` customers are additionally forced to
stop 180–330 days before the reference date (that is what makes them "lapsed"), so their fitted
dropout will not match ``a, b``; ``new_high_potential`` customers have too little history for
``a, b`` to be identified.  Measured on 60,000 customers (seed 3, orders from the files, time in
days) with :mod:`micromarketing.profiles.clv_models`: BG/NBD r/alpha came back as 4.06/610
(mainstream), 5.93/239 (eco), 9.97/281 (regulars), 6.04/179 (bargain); Gamma-Gamma p/q/gamma
within about 10 % for every segment.  With few customers dying in the window, a and b are only
loosely identified (their mean a/(a+b) is close).

One population (``population="single"``, ``datasets generate --population single``)
---------------------------------------------------------------------------------------
Every customer follows :data:`SINGLE_POPULATION`: CDNOW's published BG/NBD dropout (a 0.793,
b 2.426) and Gamma-Gamma estimates (p 6.25, q 3.74, gamma 15.44), purchase rates Gamma(r 1.5,
alpha 40 weeks) -- about two purchases a year, so that same-day orders (one transaction by the
summary's convention) stay rare -- and acquisition staggered over 60-1,100 days before the
reference date.  The true
parameters are written to ``params.json`` in the keys and unit (weeks) of ``clv fit --json``,
so a fit can be checked against them (``benchmarks/clv_recovery_bench.py``).

Planted micro-segments (:data:`SEGMENTS`; truth in ``truth.csv``)
-----------------------------------------------------------------
* ``mainstream`` — ages 35–64 in suburbs and small towns (3–55 km from a store), occasional
  purchases of ~60 EUR across fashion/home/beauty/books/toys, ~35 % in store, few e-mail opens.
* ``urban_young_eco`` — ages 25–34 within 3.5 km of a city centre, buys eco/sports/outdoor about
  every ~6 weeks online or in the app, ~45 EUR orders, high e-mail engagement (~10 opens / 90 days).
* ``lapsed_high_value`` — ages 45–64, customers for 3–5 years, big electronics/furniture/fashion
  orders (~250 EUR) but no order in the last 180–330+ days; hardly open e-mails.
* ``local_store_regulars`` — ages 55–75 living within 2.5 km of a store, small (~25 EUR)
  grocery/home/beauty baskets about every 4 weeks, >90 % in store.
* ``bargain_hunters`` — ages 35–54 in suburbs/towns, many small (~20 EUR) orders, mostly clearance
  items, open and click promotional e-mails (60 % click rate).
* ``new_high_potential`` — signed up in the last 90 days, 1–2 large (~300 EUR) electronics /
  furniture orders.

Features for rediscovering the segments (:data:`CLUSTER_FEATURES`)
------------------------------------------------------------------
Computed per customer as of the reference date, then standardised; KMeans with k = 6 recovers the
truth with an adjusted Rand index well above 0.9 (tests/datasets/test_generate_segments.py):
``recency_days`` (reference date - last order date), ``frequency`` (distinct orders),
``monetary`` (sum of amount), ``avg_order_value``, ``tenure_days`` (reference date -
signup_date), ``age`` (years), ``store_distance_km`` (haversine to the nearest store),
``store_order_share`` (orders with channel 'store' / orders), ``email_opens_90d`` and
``email_clicks_90d`` (events of type email_open / email_click in the 90 days up to the reference
date), and ``share_<category>`` (that category's share of the customer's spend) for each of the
12 categories in :data:`micromarketing.datasets.reference.CATEGORY_NAMES` — ``share_clearance`` is
the discounted/clearance share.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from micromarketing.datasets import reference as ref
from micromarketing.errors import DataError
from micromarketing.exprs import EARTH_RADIUS_KM
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.store import schema

__all__ = [
    "BLOCK",
    "CLUSTER_FEATURES",
    "GeneratedDataset",
    "REFERENCE_DATE",
    "SEGMENTS",
    "POPULATIONS",
    "SEGMENT_SPECS",
    "SINGLE_POPULATION",
    "SegmentSpec",
    "generate",
    "population_params",
]

REFERENCE_DATE = ref.REFERENCE_DATE
BLOCK = 1_000
"""Customers per random stream; chunk sizes are rounded up to a multiple of this."""

_DAY_S = 86_400
_START = np.datetime64(ref.HISTORY_START.isoformat(), "D")
_START_S = int(_START.astype("datetime64[s]").astype(np.int64))
_REF_DAY = int((np.datetime64(REFERENCE_DATE.isoformat(), "D") - _START).astype(np.int64))
_REF_END_S = _START_S + (_REF_DAY + 1) * _DAY_S  # exclusive end of history: 2026-07-01T00:00:00Z
_EVENT_WINDOW_DAYS = 180
_KINDS = ("city", "store", "suburb", "town")


@dataclass(frozen=True)
class SegmentSpec:
    """The generating parameters of one planted segment (time unit: days)."""

    name: str
    share: float
    age: tuple[int, int]  # inclusive age range in years at the reference date
    places: dict[str, float]  # weight of each place kind: city / store / suburb / town
    city_radius_km: float  # how far from a city centre (kind "city") customers live
    signup_days_ago: tuple[int, int]  # signup date uniformly this many days before the reference date
    r: float  # purchase rate lambda ~ Gamma(shape r, rate alpha)
    alpha: float
    a: float  # dropout probability p ~ Beta(a, b)
    b: float
    p_gg: float  # order value z ~ Gamma(shape p_gg, rate nu)
    q: float  # nu ~ Gamma(shape q, rate gamma)
    gamma: float
    extra_lines: float  # lines per order = 1 + Poisson(extra_lines)
    store_share: float  # mean share of orders placed in store (per customer ~ Beta, concentration 30)
    app_share: float  # share of non-store orders and web events made in the app
    categories: dict[str, float]  # mean category preference (per customer ~ Dirichlet, concentration 40)
    interests: tuple[str, ...]
    email_opt_in: float
    email_opens_90d: float  # mean e-mail opens per 90 days for opted-in customers
    click_rate: float  # probability an open is followed by a click
    promo_share: float  # share of opens that are on promotional (vs newsletter) campaigns
    web_per_year: float  # page views per year (other web/app events scale from it)
    lapse_days_ago: tuple[int, int] | None = None  # forced end of activity (lapsed customers)

    @property
    def mean_order_value(self) -> float:
        return self.p_gg * self.gamma / (self.q - 1)


SEGMENT_SPECS: tuple[SegmentSpec, ...] = (
    SegmentSpec(
        "mainstream", 0.35, (35, 64), {"suburb": 0.6, "town": 0.4}, 0.0, (365, 1800),
        r=4, alpha=600, a=1, b=39, p_gg=6, q=12, gamma=110, extra_lines=0.3,
        store_share=0.35, app_share=0.3,
        categories={"fashion": 0.3, "home": 0.25, "beauty": 0.2, "books": 0.15, "toys": 0.1},
        interests=("cinema", "football", "pets", "home-decor", "music", "travel", "cooking", "family"),
        email_opt_in=0.75, email_opens_90d=2.0, click_rate=0.1, promo_share=0.4, web_per_year=4,
    ),
    SegmentSpec(
        "urban_young_eco", 0.13, (25, 34), {"city": 1.0}, 3.5, (200, 600),
        r=6, alpha=240, a=1, b=40, p_gg=6, q=12, gamma=82.5, extra_lines=0.4,
        store_share=0.08, app_share=0.6,
        categories={"eco": 0.35, "sports": 0.25, "outdoor": 0.2, "fashion": 0.1, "books": 0.05,
                    "grocery": 0.05},
        interests=("eco", "running", "outdoor", "cycling", "vegan", "yoga", "hiking", "zero-waste"),
        email_opt_in=0.95, email_opens_90d=9.0, click_rate=0.3, promo_share=0.2, web_per_year=12,
    ),
    SegmentSpec(
        "lapsed_high_value", 0.13, (45, 64), {"city": 0.6, "suburb": 0.4}, 6.0,
        (1100, 1800), r=6, alpha=600, a=1, b=99, p_gg=8, q=15, gamma=437.5, extra_lines=0.3,
        store_share=0.3, app_share=0.2,
        categories={"electronics": 0.35, "furniture": 0.25, "fashion": 0.2, "home": 0.1, "sports": 0.1},
        interests=("travel", "wine", "golf", "tech", "design", "gastronomy"),
        email_opt_in=0.6, email_opens_90d=0.5, click_rate=0.05, promo_share=0.3, web_per_year=1,
        lapse_days_ago=(180, 330),
    ),
    SegmentSpec(
        "local_store_regulars", 0.13, (55, 75), {"store": 1.0}, 2.5, (120, 420),
        r=10, alpha=280, a=1, b=99, p_gg=8, q=15, gamma=43.75, extra_lines=0.8,
        store_share=0.92, app_share=0.2,
        categories={"grocery": 0.45, "home": 0.2, "beauty": 0.2, "books": 0.1, "toys": 0.05},
        interests=("cooking", "gardening", "reading", "family", "local-shops", "crafts"),
        email_opt_in=0.5, email_opens_90d=1.5, click_rate=0.1, promo_share=0.3, web_per_year=2,
    ),
    SegmentSpec(
        "bargain_hunters", 0.13, (35, 54), {"suburb": 0.8, "town": 0.2}, 0.0, (200, 600),
        r=6, alpha=180, a=1, b=40, p_gg=6, q=15, gamma=46.67, extra_lines=0.6,
        store_share=0.2, app_share=0.5,
        categories={"clearance": 0.65, "fashion": 0.15, "toys": 0.1, "beauty": 0.1},
        interests=("deals", "fashion", "diy", "gaming", "family"),
        email_opt_in=0.97, email_opens_90d=8.0, click_rate=0.6, promo_share=0.85, web_per_year=12,
    ),
    SegmentSpec(
        "new_high_potential", 0.13, (30, 49), {"city": 0.5, "suburb": 0.5}, 5.0, (3, 90),
        r=8, alpha=360, a=1, b=9, p_gg=10, q=15, gamma=420, extra_lines=0.5,
        store_share=0.25, app_share=0.4,
        categories={"electronics": 0.4, "furniture": 0.2, "fashion": 0.2, "outdoor": 0.1, "home": 0.1},
        interests=("tech", "design", "travel", "photography", "gaming"),
        email_opt_in=0.85, email_opens_90d=5.0, click_rate=0.2, promo_share=0.3, web_per_year=15,
    ),
)
SEGMENTS: tuple[str, ...] = tuple(s.name for s in SEGMENT_SPECS)

SINGLE_POPULATION = SegmentSpec(
    "single", 0.0, (25, 75), {"city": 0.3, "suburb": 0.4, "town": 0.3}, 5.0, (60, 1100),
    # CDNOW's published dropout (a, b; FHL 2005) and spend (Fader & Hardie 2013) estimates; purchase
    # rates r, alpha (in days) less skewed than CDNOW's, so that same-day purchases, which count as
    # one transaction, stay rare (with CDNOW's r = 0.243 they merge 13 % of the orders).
    r=1.5, alpha=40.0 * 7, a=0.793, b=2.426, p_gg=6.25, q=3.74, gamma=15.44, extra_lines=0.3,
    store_share=0.3, app_share=0.3,
    categories={"books": 0.3, "fashion": 0.2, "home": 0.2, "toys": 0.15, "beauty": 0.15},
    interests=("cinema", "music", "reading", "travel", "cooking", "family"),
    email_opt_in=0.7, email_opens_90d=3.0, click_rate=0.15, promo_share=0.4, web_per_year=5,
)
"""The ``--population single`` spec: one BG/NBD + Gamma-Gamma population with known parameters."""
POPULATIONS = ("segments", "single")
_ALL_SPECS = (*SEGMENT_SPECS, SINGLE_POPULATION)
_SINGLE_INDEX = len(SEGMENT_SPECS)

CLUSTER_FEATURES: tuple[str, ...] = (
    "recency_days", "frequency", "monetary", "avg_order_value", "tenure_days", "age",
    "store_distance_km", "store_order_share", "email_opens_90d", "email_clicks_90d",
    *(f"share_{c}" for c in ref.CATEGORY_NAMES),
)
"""Per-customer features on which the planted segments are well separated (see module docstring)."""


@dataclass
class GeneratedDataset:
    """What :func:`generate` wrote: the directory, one path and row count per table."""

    out: Path
    customers: int
    seed: int
    fmt: str
    reference_date: str
    paths: dict[str, Path] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    population: str = "segments"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (paths as strings)."""
        data = asdict(self)
        data["out"] = str(self.out)
        data["paths"] = {k: str(v) for k, v in self.paths.items()}
        return data


# ------------------------------------------------------------------------------------------------
# Static lookup arrays (built once at import).
# ------------------------------------------------------------------------------------------------
_N_SEG = len(SEGMENT_SPECS)
_N_CAT = len(ref.CATEGORIES)
_CAT_INDEX = {c: i for i, c in enumerate(ref.CATEGORY_NAMES)}
_TAG_INDEX = {t: i for i, t in enumerate(ref.INTEREST_TAGS)}


def _seg_array(attr: str) -> np.ndarray:
    return np.array([getattr(s, attr) for s in _ALL_SPECS], dtype=np.float64)


_SHARE = np.array([s.share for s in SEGMENT_SPECS], dtype=np.float64)
_SHARE_CUM = np.cumsum(_SHARE / _SHARE.sum())
_AGE_LO = np.array([s.age[0] for s in _ALL_SPECS], dtype=np.float64)
_AGE_HI = np.array([s.age[1] + 1 for s in _ALL_SPECS], dtype=np.float64)
_SIGNUP_LO = np.array([s.signup_days_ago[0] for s in _ALL_SPECS], dtype=np.int64)
_SIGNUP_HI = np.array([s.signup_days_ago[1] for s in _ALL_SPECS], dtype=np.int64)
_LAPSE = np.array([s.lapse_days_ago or (-1, -1) for s in _ALL_SPECS], dtype=np.int64)
_R, _ALPHA, _A, _B = (_seg_array(x) for x in ("r", "alpha", "a", "b"))
_PGG, _Q, _GAMMA = (_seg_array(x) for x in ("p_gg", "q", "gamma"))
_EXTRA_LINES = _seg_array("extra_lines")
_STORE_SHARE = _seg_array("store_share")
_APP_SHARE = _seg_array("app_share")
_OPT_IN = _seg_array("email_opt_in")
_OPENS = _seg_array("email_opens_90d")
_CLICK = _seg_array("click_rate")
_PROMO = _seg_array("promo_share")
_WEB = _seg_array("web_per_year")

_CAT_PREF = np.full((len(_ALL_SPECS), _N_CAT), 0.004)
for _i, _s in enumerate(_ALL_SPECS):
    for _c, _w in _s.categories.items():
        _CAT_PREF[_i, _CAT_INDEX[_c]] += _w
_CAT_PREF /= _CAT_PREF.sum(axis=1, keepdims=True)
_CAT_CONCENTRATION = 40.0

_TAG_WEIGHT = np.full((len(_ALL_SPECS), len(ref.INTEREST_TAGS)), 0.02)
for _i, _s in enumerate(_ALL_SPECS):
    for _t in _s.interests:
        _TAG_WEIGHT[_i, _TAG_INDEX[_t]] = 1.0
_TAG_LOGW = np.log(_TAG_WEIGHT)

# Anchors: where a customer's home is scattered around (city centres, stores, suburbs, towns).
_anchor_lat: list[float] = []
_anchor_lon: list[float] = []
_anchor_kind: list[int] = []
_anchor_radius: list[float] = []
_anchor_city: list[str] = []
_anchor_postcodes: list[tuple[str, ...]] = []
_anchor_weight: list[float] = []
for _city in ref.CITIES:
    _anchor_lat.append(_city.lat)
    _anchor_lon.append(_city.lon)
    _anchor_kind.append(0)
    _anchor_radius.append(0.0)
    _anchor_city.append(_city.name)
    _anchor_postcodes.append(_city.postcodes)
    _anchor_weight.append(_city.weight)
for _store in ref.STORES:
    _anchor_lat.append(_store.lat)
    _anchor_lon.append(_store.lon)
    _anchor_kind.append(1)
    _anchor_radius.append(0.0)
    _anchor_city.append(_store.city)
    _anchor_postcodes.append((_store.postcode,))
    _anchor_weight.append(1.0)
for _place in ref.PLACES:
    _anchor_lat.append(_place.lat)
    _anchor_lon.append(_place.lon)
    _anchor_kind.append(_KINDS.index(_place.kind))
    _anchor_radius.append(_place.radius_km)
    _anchor_city.append(_place.name)
    _anchor_postcodes.append((_place.postcode,))
    _anchor_weight.append(1.0)
_A_LAT = np.array(_anchor_lat)
_A_LON = np.array(_anchor_lon)
_A_KIND = np.array(_anchor_kind)
_A_CITY = pa.array(_anchor_city)
_A_PC_COUNT = np.array([len(p) for p in _anchor_postcodes])
_A_PC_START = np.concatenate([[0], np.cumsum(_A_PC_COUNT)[:-1]])
_POSTCODES = pa.array([pcode for pcs in _anchor_postcodes for pcode in pcs])

# Per segment: cumulative probability of each anchor, and the scatter radius around it.
_ANCHOR_CUM = np.zeros((len(_ALL_SPECS), len(_anchor_lat)))
_ANCHOR_RADIUS = np.zeros((len(_ALL_SPECS), len(_anchor_lat)))
for _i, _s in enumerate(_ALL_SPECS):
    _w = np.zeros(len(_anchor_lat))
    for _k, _kw in _s.places.items():
        mask = _A_KIND == _KINDS.index(_k)
        weights = np.array(_anchor_weight)[mask]
        _w[mask] = _kw * weights / weights.sum()
    _ANCHOR_CUM[_i] = np.cumsum(_w / _w.sum())
    _ANCHOR_RADIUS[_i] = np.where(_A_KIND <= 1, _s.city_radius_km, np.array(_anchor_radius))

_STORE_LAT = np.array([s.lat for s in ref.STORES])
_STORE_LON = np.array([s.lon for s in ref.STORES])
_STORE_IDS = pa.array([s.store_id for s in ref.STORES])

_FIRST_F = pa.array(ref.FIRST_NAMES_F)
_FIRST_M = pa.array(ref.FIRST_NAMES_M)
_FIRST_ALL = pa.array(ref.FIRST_NAMES_F + ref.FIRST_NAMES_M)
_FIRST_SLUG = pa.array([ref.ascii_slug(n) for n in ref.FIRST_NAMES_F + ref.FIRST_NAMES_M])
_LAST = pa.array(ref.LAST_NAMES)
_LAST_SLUG = pa.array([ref.ascii_slug(n) for n in ref.LAST_NAMES])
_JOBS = pa.array(ref.JOB_TITLES)
_DOMAINS = pa.array(["@" + d for d in ref.EMAIL_DOMAINS])
_DOMAIN_CUM = np.cumsum(np.array(ref.EMAIL_DOMAIN_WEIGHTS) / sum(ref.EMAIL_DOMAIN_WEIGHTS))
_TAGS = pa.array(ref.INTEREST_TAGS)
_SEGMENT_NAMES = pa.array([s.name for s in _ALL_SPECS])
_CATEGORY_ARRAY = pa.array(ref.CATEGORY_NAMES)
_EVENT_TYPES = pa.array(schema.EVENT_TYPES)
_EV = {name: i for i, name in enumerate(schema.EVENT_TYPES)}
_EVENT_CHANNELS = pa.array(schema.CHANNELS)
_CH = {name: i for i, name in enumerate(schema.CHANNELS)}
_ORDER_CHANNELS = pa.array(("online", "store", "app"))
_CONSENT_CHANNELS = pa.array(schema.CONSENT_CHANNELS)
_CONSENT_STATUS = pa.array(schema.CONSENT_STATUSES)
_CONSENT_SOURCES = pa.array(("signup_form", "unsubscribe_link"))
# Opt-in probability for the non-email consent channels (sms, push, post, ads, phone).
_OTHER_OPT_IN = np.array([0.4, 0.55, 0.6, 0.45, 0.2])


def _build_products() -> dict[str, np.ndarray | pa.Array]:
    """The fixed catalogue: 30 products per category, sorted by (category, price)."""
    rng = np.random.default_rng(20260630)
    cats, names, prices = [], [], []
    for ci, cat in enumerate(ref.CATEGORIES):
        combos = [(adj, noun) for noun in cat.nouns for adj in ref.PRODUCT_ADJECTIVES]
        chosen = rng.choice(len(combos), size=ref.PRODUCTS_PER_CATEGORY, replace=False)
        raw = np.exp(rng.uniform(np.log(cat.price_min), np.log(cat.price_max), ref.PRODUCTS_PER_CATEGORY))
        price = np.maximum(np.round(raw) - 0.01, cat.price_min)
        order = np.argsort(price, kind="stable")
        for j in order:
            adj, noun = combos[chosen[j]]
            cats.append(ci)
            names.append(f"{adj} {noun}")
            prices.append(float(np.round(price[j], 2)))
    cat_arr = np.array(cats)
    price_arr = np.array(prices)
    return {
        "category": cat_arr,
        "price": price_arr,
        "name": pa.array(names),
        "id": pa.array([f"P{i:04d}" for i in range(1, len(names) + 1)]),
        "key": cat_arr * 1e6 + price_arr,
        "start": np.searchsorted(cat_arr, np.arange(_N_CAT), side="left"),
        "end": np.searchsorted(cat_arr, np.arange(_N_CAT), side="right"),
        "repeatable": np.array([ref.CATEGORIES[c].repeatable for c in cats]),
    }


_PRODUCTS = _build_products()
_EXTRA_QTY = np.array([c.extra_quantity for c in ref.CATEGORIES])

# Campaigns in the event window: a newsletter every Tuesday and a promotion every Friday, 09:00 UTC.
_campaign_days = np.arange(_REF_DAY - _EVENT_WINDOW_DAYS - 7, _REF_DAY + 1)
_weekday = ((_START + _campaign_days).astype("datetime64[D]").astype(np.int64) + 3) % 7  # 0 = Monday
_NL_DAYS = _campaign_days[_weekday == 1]
_PR_DAYS = _campaign_days[_weekday == 4]
_CAMPAIGN_DAYS = np.concatenate([_NL_DAYS, _PR_DAYS])
_CAMPAIGN_IDS = pa.array(
    [f"NL-{(_START + d).item().isoformat()}" for d in _NL_DAYS]
    + [f"PR-{(_START + d).item().isoformat()}" for d in _PR_DAYS]
)


# ------------------------------------------------------------------------------------------------
# Simulation of one block of customers (numbers only; strings are built per chunk).
# ------------------------------------------------------------------------------------------------
def _pick(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Row-wise inverse-CDF sampling: index of the first cum[i, j] >= u[i]."""
    idx = (u[:, None] > cum).sum(axis=1)
    return np.minimum(idx, cum.shape[1] - 1)


def _haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """:func:`micromarketing.exprs.haversine_km` on numpy arrays: the generator builds its rows
    before any warehouse exists, with the same Earth radius."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dl = np.radians(lon2 - lon1)
    h = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(h))


def _group_starts(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _simulate_block(seed: int, block: int, n: int, single: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """Simulate ``n`` customers with the random stream of ``(seed, block)``; indices are block-local.

    With ``single`` every customer belongs to :data:`SINGLE_POPULATION` (the draws stay the same).
    """
    rng = np.random.default_rng([seed, block])

    # -- customers -------------------------------------------------------------------------------
    seg = np.searchsorted(_SHARE_CUM, rng.random(n), side="right").clip(0, _N_SEG - 1)
    if single:
        seg = np.full(n, _SINGLE_INDEX)
    # whole days strictly inside [lo, hi + 1) years, so the calendar age is within the range
    age_days = rng.integers(np.ceil(_AGE_LO[seg] * 365.25) + 1, np.floor(_AGE_HI[seg] * 365.25) - 1)
    birth_day = _REF_DAY - age_days
    female = rng.random(n) < 0.52
    first = np.where(
        female,
        rng.integers(0, len(ref.FIRST_NAMES_F), n),
        len(ref.FIRST_NAMES_F) + rng.integers(0, len(ref.FIRST_NAMES_M), n),
    )
    last = rng.integers(0, len(ref.LAST_NAMES), n)
    job = rng.integers(0, len(ref.JOB_TITLES), n)
    domain = np.searchsorted(_DOMAIN_CUM, rng.random(n), side="right").clip(0, len(ref.EMAIL_DOMAINS) - 1)
    phone = rng.integers(0, 10**8, n) + np.where(rng.random(n) < 0.7, 6, 7) * 10**8
    signup_day = _REF_DAY - rng.integers(_SIGNUP_LO[seg], _SIGNUP_HI[seg] + 1)

    anchor = _pick(_ANCHOR_CUM[seg], rng.random(n))
    radius = _ANCHOR_RADIUS[seg, anchor]
    dist = radius * np.sqrt(rng.random(n))
    dist = np.where(_A_KIND[anchor] == 1, np.maximum(dist, 0.15), dist)  # not inside the store
    theta = rng.uniform(0, 2 * np.pi, n)
    lat = _A_LAT[anchor] + dist * np.cos(theta) / 111.2
    lon = _A_LON[anchor] + dist * np.sin(theta) / (111.2 * np.cos(np.radians(_A_LAT[anchor])))
    postcode = _A_PC_START[anchor] + (rng.random(n) * _A_PC_COUNT[anchor]).astype(np.int64)
    store_km = _haversine_km(lat[:, None], lon[:, None], _STORE_LAT[None, :], _STORE_LON[None, :])
    nearest_store = store_km.argmin(axis=1)

    n_tags = rng.integers(2, 5, n)
    tag_keys = _TAG_LOGW[seg] + rng.gumbel(size=(n, len(ref.INTEREST_TAGS)))
    tags = np.argsort(-tag_keys, axis=1, kind="stable")[:, :4]
    tags = np.where(np.arange(4)[None, :] < n_tags[:, None], tags, -1)

    cat_pref = rng.gamma(_CAT_CONCENTRATION * _CAT_PREF[seg])
    cat_pref /= cat_pref.sum(axis=1, keepdims=True)
    cat_cum = np.cumsum(cat_pref, axis=1)
    store_share = rng.beta(_STORE_SHARE[seg] * 30, (1 - _STORE_SHARE[seg]) * 30)
    engagement = rng.gamma(8.0, 1 / 8.0, n)

    # -- purchases: BG/NBD times, Gamma-Gamma values -----------------------------------------------
    lam = rng.gamma(_R[seg], 1 / _ALPHA[seg])
    p_drop = rng.beta(_A[seg], _B[seg])
    first_day = np.minimum(signup_day + rng.exponential(3.0, n).astype(np.int64), _REF_DAY)
    t0 = first_day + 0.5
    lapse = _LAPSE[seg, 0] >= 0
    lapse_day = _REF_DAY - rng.integers(np.maximum(_LAPSE[seg, 0], 0), np.maximum(_LAPSE[seg, 1], 0) + 1)
    end_t = np.where(lapse, lapse_day, _REF_DAY + 1).astype(np.float64)
    horizon = np.maximum(end_t - t0, 0.0)
    # BG/NBD: death is possible after each *repeat* purchase (not at the first), so the number of
    # repeat purchases made before dropping out is Geometric(p) on {1, 2, ...}
    lives = rng.geometric(np.maximum(p_drop, 1e-9))
    mu = lam * horizon
    cap = np.ceil(mu + 6 * np.sqrt(mu) + 10).astype(np.int64)
    n_gap = np.minimum(lives, cap)
    gap_cust = np.repeat(np.arange(n), n_gap)
    gaps = rng.exponential(1.0, n_gap.sum()) / lam[gap_cust]
    csum = np.cumsum(gaps)
    starts = _group_starts(n_gap)
    base = np.where(starts > 0, csum[np.maximum(starts - 1, 0)], 0.0)
    rep_t = csum - base[gap_cust]
    keep = rep_t < horizon[gap_cust]
    o_cust = np.concatenate([np.arange(n), gap_cust[keep]])
    o_t = np.concatenate([t0, t0[gap_cust[keep]] + rep_t[keep]])
    order = np.lexsort((o_t, o_cust))
    o_cust, o_t = o_cust[order], o_t[order]
    n_orders = len(o_cust)
    o_day = np.minimum(np.floor(o_t).astype(np.int64), _REF_DAY)
    in_store = rng.random(n_orders) < store_share[o_cust]
    in_app = rng.random(n_orders) < _APP_SHARE[seg[o_cust]]
    o_channel = np.where(in_store, 1, np.where(in_app, 2, 0))
    tod = np.where(in_store, rng.integers(8 * 3600, 18 * 3600, n_orders),
                   rng.integers(6 * 3600, 23 * 3600, n_orders))
    o_ts = _START_S + o_day * _DAY_S + tod
    nu = rng.gamma(_Q[seg], 1 / _GAMMA[seg])
    o_value = rng.gamma(_PGG[seg[o_cust]], 1 / nu[o_cust])

    n_lines = 1 + rng.poisson(_EXTRA_LINES[seg[o_cust]])
    l_order = np.repeat(np.arange(n_orders), n_lines)
    l_cust = o_cust[l_order]
    l_no = np.arange(len(l_order)) - _group_starts(n_lines)[l_order] + 1
    weight = rng.exponential(1.0, len(l_order))
    weight_sum = np.bincount(l_order, weights=weight, minlength=n_orders)
    l_value = o_value[l_order] * weight / weight_sum[l_order]
    l_amount = np.maximum(np.round(l_value, 2), 0.01)
    l_cat = _pick(cat_cum[l_cust], rng.random(len(l_order)))
    unit_target = l_value / (1 + rng.poisson(_EXTRA_QTY[l_cat]))
    prod = np.searchsorted(_PRODUCTS["key"], l_cat * 1e6 + unit_target)
    prod = prod + rng.integers(-1, 2, len(l_order))
    prod = np.clip(prod, _PRODUCTS["start"][l_cat], _PRODUCTS["end"][l_cat] - 1)
    l_qty = np.clip(np.round(l_amount / _PRODUCTS["price"][prod]), 1, 99).astype(np.int64)

    # -- consent ----------------------------------------------------------------------------------
    email_in = rng.random(n) < _OPT_IN[seg]
    other_in = rng.random((n, len(_OTHER_OPT_IN))) < _OTHER_OPT_IN[None, :]
    consent_status = np.concatenate([email_in[:, None], other_in], axis=1)  # n x 6, True = opt_in
    signup_ts = _START_S + signup_day * _DAY_S + rng.integers(7 * 3600, 22 * 3600, n)
    unsub = email_in & (rng.random(n) < 0.02)
    unsub_ts = signup_ts + (rng.random(n) * (_REF_END_S - 1 - signup_ts)).astype(np.int64)
    c_cust = np.repeat(np.arange(n), len(schema.CONSENT_CHANNELS))
    c_chan = np.tile(np.arange(len(schema.CONSENT_CHANNELS)), n)
    c_optout = ~consent_status.ravel()
    c_ts = signup_ts[c_cust]
    c_src = np.zeros(len(c_cust), dtype=np.int64)
    u_idx = np.flatnonzero(unsub)
    c_cust = np.concatenate([c_cust, u_idx])
    c_chan = np.concatenate([c_chan, np.zeros(len(u_idx), dtype=np.int64)])
    c_optout = np.concatenate([c_optout, np.ones(len(u_idx), dtype=bool)])
    c_ts = np.concatenate([c_ts, unsub_ts[u_idx]])
    c_src = np.concatenate([c_src, np.ones(len(u_idx), dtype=np.int64)])
    corder = np.lexsort((c_ts, c_cust))

    # -- events -----------------------------------------------------------------------------------
    win_start = np.maximum(signup_day, _REF_DAY - _EVENT_WINDOW_DAYS + 1)
    win_days = (_REF_DAY - win_start + 1).astype(np.float64)
    # e-mail opens tied to campaigns (newsletters on Tuesdays, promotions on Fridays)
    n_open = rng.poisson(np.where(email_in, _OPENS[seg] * engagement * win_days / 90, 0.0))
    op_cust = np.repeat(np.arange(n), n_open)
    promo = rng.random(len(op_cust)) < _PROMO[seg[op_cust]]
    lo = np.where(promo, len(_NL_DAYS) + np.searchsorted(_PR_DAYS, win_start[op_cust]),
                  np.searchsorted(_NL_DAYS, win_start[op_cust]))
    hi = np.where(promo, len(_CAMPAIGN_DAYS), len(_NL_DAYS))
    campaign = lo + (rng.random(len(op_cust)) * (hi - lo)).astype(np.int64)
    ok = hi > lo
    campaign = np.minimum(campaign, len(_CAMPAIGN_DAYS) - 1)
    op_ts = (_START_S + _CAMPAIGN_DAYS[campaign] * _DAY_S + 9 * 3600
             + rng.exponential(8 * 3600, len(op_cust)).astype(np.int64))
    ok &= op_ts < np.where(unsub[op_cust], unsub_ts[op_cust], _REF_END_S)
    op_cust, campaign, op_ts = op_cust[ok], campaign[ok], op_ts[ok]
    clicked = rng.random(len(op_cust)) < _CLICK[seg[op_cust]]
    ck_ts = op_ts[clicked] + rng.integers(5, 600, int(clicked.sum()))
    ck_ok = ck_ts < _REF_END_S
    # web / app activity uniformly over the window
    rates = np.stack([
        _WEB[seg],  # page_view
        0.6 * _WEB[seg],  # product_view
        0.1 * _WEB[seg],  # add_to_cart
        0.2 * _WEB[seg],  # search
        0.5 * _WEB[seg] * _APP_SHARE[seg],  # app_open
        0.1 * _WEB[seg] * _APP_SHARE[seg] * other_in[:, 1],  # push_open (push opt-in)
        0.05 * _WEB[seg] * other_in[:, 0],  # sms_click (sms opt-in)
    ], axis=1)
    web_types = np.array([_EV["page_view"], _EV["product_view"], _EV["add_to_cart"], _EV["search"],
                          _EV["app_open"], _EV["push_open"], _EV["sms_click"]])
    counts = rng.poisson(rates * (engagement * win_days / 365)[:, None])
    w_cust = np.repeat(np.repeat(np.arange(n), len(web_types)), counts.ravel())
    w_type = np.repeat(np.tile(web_types, n), counts.ravel())
    w_day = win_start[w_cust] + (rng.random(len(w_cust)) * win_days[w_cust]).astype(np.int64)
    w_ts = _START_S + w_day * _DAY_S + rng.integers(6 * 3600, 23 * 3600, len(w_cust))
    in_app_ev = rng.random(len(w_cust)) < _APP_SHARE[seg[w_cust]]
    w_chan = np.select(
        [w_type == _EV["app_open"], w_type == _EV["push_open"], w_type == _EV["sms_click"]],
        [_CH["app"], _CH["push"], _CH["sms"]],
        np.where(in_app_ev, _CH["app"], _CH["web"]),
    )
    w_has_product = (w_type == _EV["product_view"]) | (w_type == _EV["add_to_cart"])
    w_cat = _pick(cat_cum[w_cust], rng.random(len(w_cust)))
    w_prod = _PRODUCTS["start"][w_cat] + (
        rng.random(len(w_cust)) * (_PRODUCTS["end"][w_cat] - _PRODUCTS["start"][w_cat])
    ).astype(np.int64)
    w_prod = np.where(w_has_product, w_prod, -1)

    e_cust = np.concatenate([op_cust, op_cust[clicked][ck_ok], w_cust, u_idx])
    e_type = np.concatenate([
        np.full(len(op_cust), _EV["email_open"]), np.full(int(ck_ok.sum()), _EV["email_click"]),
        w_type, np.full(len(u_idx), _EV["unsubscribe"]),
    ])
    e_ts = np.concatenate([op_ts, ck_ts[ck_ok], w_ts, unsub_ts[u_idx]])
    e_chan = np.concatenate([
        np.full(len(op_cust) + int(ck_ok.sum()), _CH["email"]), w_chan, np.full(len(u_idx), _CH["email"]),
    ])
    e_prod = np.concatenate([np.full(len(op_cust) + int(ck_ok.sum()), -1), w_prod, np.full(len(u_idx), -1)])
    e_campaign = np.concatenate([campaign, campaign[clicked][ck_ok], np.full(len(w_cust) + len(u_idx), -1)])
    eorder = np.lexsort((e_type, e_ts, e_cust))

    return {
        "customers": {
            "seg": seg, "birth_day": birth_day, "female": female, "first": first, "last": last,
            "job": job, "domain": domain, "phone": phone, "signup_day": signup_day, "lat": lat,
            "lon": lon, "anchor": anchor, "postcode": postcode, "tags": tags,
        },
        "transactions": {
            "order": l_order, "line_no": l_no, "cust": l_cust, "ts": o_ts[l_order],
            "product": prod, "category": l_cat, "quantity": l_qty, "amount": l_amount,
            "channel": o_channel[l_order],
            "store": np.where(o_channel[l_order] == 1, nearest_store[l_cust], -1),
        },
        "events": {
            "cust": e_cust[eorder], "type": e_type[eorder], "ts": e_ts[eorder], "channel": e_chan[eorder],
            "product": e_prod[eorder], "campaign": e_campaign[eorder],
        },
        "consent": {
            "cust": c_cust[corder], "channel": c_chan[corder], "optout": c_optout[corder],
            "ts": c_ts[corder], "source": c_src[corder],
        },
        "_counts": {"orders": np.array([n_orders])},
    }


def _merge_blocks(blocks: list[dict[str, dict[str, np.ndarray]]], sizes: list[int]) -> dict[str, Any]:
    """Concatenate block results, shifting block-local customer and order indices."""
    cust_offsets = _group_starts(np.array(sizes))
    order_offsets = _group_starts(np.array([int(b["_counts"]["orders"][0]) for b in blocks]))
    merged: dict[str, Any] = {}
    for table in ("customers", "transactions", "events", "consent"):
        cols: dict[str, np.ndarray] = {}
        for name in blocks[0][table]:
            parts = []
            for b, co, oo in zip(blocks, cust_offsets, order_offsets, strict=True):
                arr = b[table][name]
                if name == "cust":
                    arr = arr + co
                elif name == "order":
                    arr = arr + oo
                parts.append(arr)
            cols[name] = np.concatenate(parts)
        merged[table] = cols
    merged["n_orders"] = int(order_offsets[-1] + blocks[-1]["_counts"]["orders"][0])
    return merged


# ------------------------------------------------------------------------------------------------
# Formatting numbers into Arrow tables that match the schema.
# ------------------------------------------------------------------------------------------------
def _join(*parts: Any) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded numbers, e.g. C0000001."""
    return _join(prefix, pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0"))


def _timestamps(seconds: np.ndarray, text: bool) -> pa.Array:
    ts = pa.array(seconds.astype("datetime64[s]"))
    if not text:
        return ts.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
    plain = pc.replace_substring(pc.cast(ts, pa.string()), " ", "T", max_replacements=1)
    return _join(plain, "Z")


def _dates(days: np.ndarray) -> pa.Array:
    return pa.array((_START + days).astype("datetime64[D]"))


def _take(values: pa.Array, idx: np.ndarray) -> pa.Array:
    """values[idx] with -1 meaning null."""
    mask = idx < 0
    taken = values.take(pa.array(np.where(mask, 0, idx)))
    return pc.if_else(pa.array(mask), pa.scalar(None, values.type), taken) if mask.any() else taken


def _customers_table(c: dict[str, np.ndarray], first_num: int, width: int) -> pa.Table:
    n = len(c["seg"])
    num = first_num + np.arange(n)
    tag_cols = [_take(_TAGS, c["tags"][:, j]) for j in range(c["tags"].shape[1])]
    email = _join(
        _FIRST_SLUG.take(pa.array(c["first"])), ".", _LAST_SLUG.take(pa.array(c["last"])),
        pc.cast(pa.array(num), pa.string()), _DOMAINS.take(pa.array(c["domain"])),
    )
    pcode = _POSTCODES.take(pa.array(c["postcode"]))
    return pa.table({
        "customer_id": _ids("C", num, width),
        "first_name": _FIRST_ALL.take(pa.array(c["first"])),
        "last_name": _LAST.take(pa.array(c["last"])),
        "email": email,
        "phone": _join("+33", pc.cast(pa.array(c["phone"]), pa.string())),
        "birth_date": _dates(c["birth_day"]),
        "gender": pa.array(np.where(c["female"], "F", "M")),
        "job_title": _JOBS.take(pa.array(c["job"])),
        "city": _A_CITY.take(pa.array(c["anchor"])),
        "postcode": pcode,
        "country": pa.array(np.full(n, ref.COUNTRY)),
        "lat": pa.array(np.round(c["lat"], 6)),
        "lon": pa.array(np.round(c["lon"], 6)),
        "timezone": pa.array(np.full(n, ref.TIMEZONE)),
        "signup_date": _dates(c["signup_day"]),
        "interests": pc.binary_join_element_wise(*tag_cols, ";", null_handling="skip"),
    })


def _transactions_table(t: dict[str, np.ndarray], first_num: int, first_order: int, width: int,
                        text: bool) -> pa.Table:
    n = len(t["order"])
    return pa.table({
        "order_id": _ids("O", first_order + t["order"], 10),
        "line_no": pa.array(t["line_no"], pa.int64()),
        "customer_id": _ids("C", first_num + t["cust"], width),
        "ordered_at": _timestamps(t["ts"], text),
        "product_id": _PRODUCTS["id"].take(pa.array(t["product"])),
        "category": _CATEGORY_ARRAY.take(pa.array(t["category"])),
        "quantity": pa.array(t["quantity"], pa.int64()),
        "amount": pa.array(t["amount"]),
        "currency": pa.array(np.full(n, ref.CURRENCY)),
        "channel": _ORDER_CHANNELS.take(pa.array(t["channel"])),
        "store_id": _take(_STORE_IDS, t["store"]),
    })


def _events_table(e: dict[str, np.ndarray], first_num: int, first_event: int, width: int,
                  text: bool) -> pa.Table:
    n = len(e["cust"])
    return pa.table({
        "event_id": _ids("E", first_event + np.arange(n), 10),
        "customer_id": _ids("C", first_num + e["cust"], width),
        "event_type": _EVENT_TYPES.take(pa.array(e["type"])),
        "occurred_at": _timestamps(e["ts"], text),
        "channel": _EVENT_CHANNELS.take(pa.array(e["channel"])),
        "product_id": _take(_PRODUCTS["id"], e["product"]),
        "campaign_id": _take(_CAMPAIGN_IDS, e["campaign"]),
    })


def _consent_table(k: dict[str, np.ndarray], first_num: int, width: int, text: bool) -> pa.Table:
    return pa.table({
        "customer_id": _ids("C", first_num + k["cust"], width),
        "channel": _CONSENT_CHANNELS.take(pa.array(k["channel"])),
        "status": _CONSENT_STATUS.take(pa.array(k["optout"].astype(np.int64))),
        "recorded_at": _timestamps(k["ts"], text),
        "source": _CONSENT_SOURCES.take(pa.array(k["source"])),
        "purpose": pa.array(np.full(len(k["cust"]), "marketing")),
        # no generated consent ends (only a preference-centre pause writes one)
        "valid_until": pa.nulls(len(k["cust"]), pa.string() if text else pa.timestamp("us", tz="UTC")),
    })


def _truth_table(c: dict[str, np.ndarray], first_num: int, width: int) -> pa.Table:
    return pa.table({
        "customer_id": _ids("C", first_num + np.arange(len(c["seg"])), width),
        "segment": _SEGMENT_NAMES.take(pa.array(c["seg"])),
    })


def _products_table() -> pa.Table:
    n = len(_PRODUCTS["price"])
    return pa.table({
        "product_id": _PRODUCTS["id"],
        "name": _PRODUCTS["name"],
        "category": _CATEGORY_ARRAY.take(pa.array(_PRODUCTS["category"])),
        "price": pa.array(_PRODUCTS["price"]),
        "currency": pa.array(np.full(n, ref.CURRENCY)),
        "repeatable": pa.array(_PRODUCTS["repeatable"]),
    })


def _stores_table() -> pa.Table:
    return pa.table({
        "store_id": [s.store_id for s in ref.STORES],
        "name": [s.name for s in ref.STORES],
        "city": [s.city for s in ref.STORES],
        "postcode": [s.postcode for s in ref.STORES],
        "country": [ref.COUNTRY] * len(ref.STORES),
        "lat": [s.lat for s in ref.STORES],
        "lon": [s.lon for s in ref.STORES],
    })


def _jsonl_bytes(table: pa.Table) -> pa.Buffer | bytes:
    """The rows of ``table`` (string columns, no characters needing escapes) as JSON lines."""
    parts: list[Any] = []
    for i, name in enumerate(table.column_names):
        col = table.column(name).combine_chunks()
        quoted = _join('"', col, '"')
        value = pc.if_else(pc.is_null(col), "null", quoted) if col.null_count else quoted
        parts += [("{" if i == 0 else ",") + f'"{name}":', value]
    lines = _join(*parts, "}\n")
    if len(lines) == 0:
        return b""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    return lines.buffers()[2][int(offsets[0]) : int(offsets[-1])]


# ------------------------------------------------------------------------------------------------
# Writers
# ------------------------------------------------------------------------------------------------
class _Sink:
    """Streams tables of one schema into a CSV, Parquet or JSONL file."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind
        self.rows = 0
        self._writer: Any = None
        self._fh: IO[bytes] | None = None

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if self.kind == "parquet":
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self._writer.write_table(table)
            return
        if self._fh is None:
            self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in close()
            if self.kind == "csv":
                self._fh.write((",".join(table.column_names) + "\n").encode())
        if self.kind == "jsonl":
            self._fh.write(_jsonl_bytes(table))
            return
        if self._writer is None:
            options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
            self._writer = pacsv.CSVWriter(self._fh, table.schema, write_options=options)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._fh is not None:
            self._fh.close()


def generate(
    out: Path,
    customers: int = 20_000,
    seed: int = 0,
    fmt: Literal["csv", "parquet"] = "csv",
    progress: ProgressCallback = noop_progress,
    chunk_size: int = 10_000,
    population: Literal["segments", "single"] = "segments",
) -> GeneratedDataset:
    """Write a reproducible demo data set with planted micro-segments into directory ``out``.

    Produces ``customers``, ``products``, ``stores``, ``transactions``, ``consent`` and ``truth``
    (``.csv`` or ``.parquet`` by ``fmt``) and ``events`` (``.jsonl`` for CSV, ``.parquet`` for
    Parquet); columns match :mod:`micromarketing.store.schema`.  Customers are simulated in
    blocks of :data:`BLOCK` with independent random streams and written ``chunk_size`` (rounded
    up to a whole number of blocks) at a time, so memory stays flat (about 0.4 GB peak with the
    default 10,000; 50,000 needs about 0.9 GB and is not faster) and the bytes depend only on
    ``customers``, ``seed`` and ``fmt`` (Parquet row groups also follow the chunk size).
    ``progress`` is called as ``("customers", done, total)`` after each chunk.  Files of the
    same names in the other format are removed from ``out`` so a directory never holds both.
    ``population="single"`` simulates one BG/NBD + Gamma-Gamma population
    (:data:`SINGLE_POPULATION`) instead of the planted segments and writes its generating
    parameters to ``params.json`` (see :func:`population_params`).
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if seed < 0:
        raise ValueError("seed must be a non-negative integer")
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    if population not in POPULATIONS:
        raise DataError(f"unknown population {population!r} (use {' or '.join(POPULATIONS)})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    text = fmt == "csv"
    ext = "csv" if text else "parquet"
    width = max(7, len(str(customers)))
    blocks_per_chunk = max(1, math.ceil(chunk_size / BLOCK))
    names = ("customers", "products", "stores", "transactions", "events", "consent", "truth")
    sinks = {
        name: _Sink(out / f"{name}.{'jsonl' if name == 'events' and text else ext}",
                    "jsonl" if name == "events" and text else ext)
        for name in names
    }
    for name, sink in sinks.items():  # a previous run in the other format must not be ingested too
        for stale in (out / f"{name}.{suffix}" for suffix in ("csv", "parquet", "jsonl")):
            if stale != sink.path and stale.exists():
                stale.unlink()
    try:
        sinks["products"].write(_products_table())
        sinks["stores"].write(_stores_table())
        n_blocks = math.ceil(customers / BLOCK)
        order_counter = 1
        event_counter = 1
        progress("customers", 0, customers)
        for chunk_start in range(0, n_blocks, blocks_per_chunk):
            block_ids = range(chunk_start, min(chunk_start + blocks_per_chunk, n_blocks))
            sizes = [min(BLOCK, customers - b * BLOCK) for b in block_ids]
            blocks = [
                _simulate_block(seed, b, s, population == "single")
                for b, s in zip(block_ids, sizes, strict=True)
            ]
            merged = _merge_blocks(blocks, sizes)
            first_num = chunk_start * BLOCK + 1
            sinks["customers"].write(_customers_table(merged["customers"], first_num, width))
            sinks["truth"].write(_truth_table(merged["customers"], first_num, width))
            sinks["transactions"].write(
                _transactions_table(merged["transactions"], first_num, order_counter, width, text))
            events = _events_table(merged["events"], first_num, event_counter, width, text)
            sinks["events"].write(events)
            sinks["consent"].write(_consent_table(merged["consent"], first_num, width, text))
            order_counter += merged["n_orders"]
            event_counter += events.num_rows
            progress("customers", first_num - 1 + sum(sizes), customers)
    finally:
        for sink in sinks.values():
            sink.close()
    params_path = out / "params.json"
    paths = {name: sink.path for name, sink in sinks.items()}
    if population == "single":
        params_path.write_text(json.dumps(population_params(SINGLE_POPULATION), indent=2) + "\n")
        paths["params"] = params_path
    elif params_path.exists():  # a previous single-population run in the same directory
        params_path.unlink()
    return GeneratedDataset(
        out=out, customers=customers, seed=seed, fmt=fmt, reference_date=REFERENCE_DATE.isoformat(),
        paths=paths,
        rows={name: sink.rows for name, sink in sinks.items()},
        population=population,
    )


def population_params(spec: SegmentSpec, unit_days: float = 7.0) -> dict[str, dict[str, float]]:
    """A spec's generating parameters with the keys and time unit of ``clv fit --json`` (weeks).

    The purchase rate is Gamma(r, rate alpha) per day in the simulation, so in units of
    ``unit_days`` days alpha becomes ``alpha / unit_days``; a, b and the Gamma-Gamma
    parameters have no time unit.
    """
    return {
        "bgnbd": {"r": spec.r, "alpha": spec.alpha / unit_days, "a": spec.a, "b": spec.b},
        "gamma_gamma": {"p": spec.p_gg, "q": spec.q, "gamma": spec.gamma},
    }

