"""Buyer personas for discovered clusters: a generated name, a paragraph, size, value and traits.

What it owns
------------
:func:`cluster_facts` measures each cluster against the base (the clustered customers): numeric
features as standardised differences (cluster mean minus base mean, in base standard deviations,
on the same log1p/standardised scale the clustering used) plus raw means and medians for the
text; categorical fields (age band, preferred channel, city) and interest tags as shares with
their lift (share in the cluster / share in the base).  All of it is computed by grouped
aggregates in the warehouse; only one row per cluster (and per category value) comes back.
:func:`build_personas` turns those facts into :class:`Persona` objects.

Why it is hand-written
----------------------
The name is a small deterministic phrase generator over the strongest traits (thresholds on the
standardised differences choose adjectives — age, lifecycle, location, value, engagement — and a
noun from the dominant category or channel), not a language model: the same clusters always get
the same names, and every word can be traced to a number in the traits list.  Protected
attributes (``segments.sensitive_fields``) are never used in personas.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np

from micromarketing.segments import guards
from micromarketing.segments.features import FEATURES, ClusteringFeatures, Standardiser, transformed
from micromarketing.store.context import StoreContext

STRONG = 0.6  # |standardised difference| for an adjective
VERY_STRONG = 1.0
MIN_LIFT = 1.3  # categorical trait worth listing
MAX_TRAITS = 8
CATEGORICAL_FIELDS = (("profiles", "age_band"), ("profiles", "preferred_channel"), ("customers", "city"))
NOUNS = {"clearance": "bargain hunters"}


@dataclass
class NumericFact:
    """One numeric feature of one cluster against the base."""

    feature: str
    label: str
    unit: str
    mean: float
    median: float
    base_mean: float
    base_median: float
    std_diff: float


@dataclass
class CategoryFact:
    """One value of a categorical field (or an interest tag) in one cluster against the base."""

    field: str
    value: str
    share: float
    base_share: float

    @property
    def lift(self) -> float:
        return self.share / self.base_share if self.base_share else float("inf")


@dataclass
class ClusterFacts:
    """Everything a persona is written from, for one cluster."""

    cluster: int
    size: int
    share: float
    revenue: float
    revenue_share: float
    avg_clv: float | None
    numeric: dict[str, NumericFact]
    categories: dict[str, str]  # share_<slug> feature -> category name
    categorical: dict[str, list[CategoryFact]] = field(default_factory=dict)  # field -> values, by share
    order_interval_days: float | None = None
    base_order_interval_days: float | None = None
    as_of: str = ""


@dataclass
class Trait:
    """A way the cluster differs from the base, with the number behind it."""

    field: str
    kind: str  # numeric | category | interest
    value: float | str
    base_value: float | str | None
    std_diff: float | None
    lift: float | None
    text: str


@dataclass
class Persona:
    """A discovered segment described for marketers."""

    cluster: int
    name: str
    tagline: str
    description: str
    size: int
    share: float
    revenue: float
    revenue_share: float
    avg_clv: float | None
    avg_order_value: float | None
    traits: list[Trait]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (plain floats)."""
        return _plain(asdict(self))


def cluster_facts(
    ctx: StoreContext, cf: ClusteringFeatures, labels: ir.Table, standardiser: Standardiser, k: int
) -> list[ClusterFacts]:
    """Measure every cluster against the base by grouped aggregates in the warehouse.

    ``labels`` holds each clustered customer's ``cluster`` (``customer_id``, ``cluster``).
    Means, exact medians (Ibis' ``median``: ``percentile_cont(x, 0.5)`` on DuckDB,
    ``percentile(x, 0.5)`` on Spark, both interpolating between the two middle values as numpy
    does), sums and category counts are computed where the rows are; k + 1 rows come back (and
    the category counts).  The standardised difference of a feature is the cluster's mean of the
    transformed feature, standardised: by linearity, the mean of the standardised values the
    clustering used.
    """
    scored = cf.table.join(labels, "customer_id")
    grouped = scored.group_by("cluster").aggregate(**_fact_aggregates(scored, cf))
    per = {int(r["cluster"]): r for r in grouped.to_pyarrow().to_pylist()}
    base = cf.table.aggregate(**_fact_aggregates(cf.table, cf)).to_pyarrow().to_pylist()[0]
    sizes = np.array([int(per[c]["_size"]) if c in per else 0 for c in range(k)])
    n = max(cf.n, 1)
    total_revenue = float(base.get("_revenue") or 0.0)
    sensitive = list(ctx.settings.segments.sensitive_fields)
    categorical = _categorical_facts(ctx, labels, sizes, k, sensitive)
    out: list[ClusterFacts] = []
    for c in range(k):
        row = per.get(c)  # None: no customer is nearest to this centre
        numeric = {}
        for j, spec in enumerate(cf.specs):
            numeric[spec.name] = NumericFact(
                spec.name,
                spec.label,
                spec.unit,
                float(row[f"_mean{j}"]) if row else 0.0,
                float(row[f"_median{j}"]) if row else float("nan"),
                float(base[f"_mean{j}"]),
                float(base[f"_median{j}"]),
                (float(row[f"_t{j}"]) - standardiser.mean[j]) / standardiser.scale[j] if row else 0.0,
            )
        revenue = float(row.get("_revenue") or 0.0) if row else 0.0
        out.append(
            ClusterFacts(
                cluster=c,
                size=int(sizes[c]),
                share=float(sizes[c] / n),
                revenue=revenue,
                revenue_share=revenue / total_revenue if total_revenue else 0.0,
                avg_clv=_float(row["_clv"]) if row else None,
                numeric=numeric,
                categories=dict(cf.categories),
                categorical=categorical.get(c, {}),
                order_interval_days=_float(row["_interval"]) if row else None,
                base_order_interval_days=_float(base["_interval"]),
                as_of=cf.as_of.isoformat(),
            )
        )
    return out


def _fact_aggregates(table: ir.Table, cf: ClusteringFeatures) -> dict[str, ir.Value]:
    """What :func:`cluster_facts` measures over the rows of ``table`` (a cluster's, or all)."""
    t = transformed(table, cf.specs)
    aggs: dict[str, ir.Value] = {"_size": table.count()}
    for j, spec in enumerate(cf.specs):
        aggs[f"_mean{j}"] = table[spec.name].mean()
        aggs[f"_median{j}"] = table[spec.name].median()
        aggs[f"_t{j}"] = t[spec.name].mean()
    if "monetary" in cf.names:
        aggs["_revenue"] = table.monetary.sum()
    aggs["_clv"] = table.clv.mean()
    aggs["_interval"] = table.order_interval_days.median()
    return aggs


def _categorical_facts(
    ctx: StoreContext, labels: ir.Table, sizes: np.ndarray, k: int, sensitive: list[str]
) -> dict[int, dict[str, list[CategoryFact]]]:
    """Shares of age band, preferred channel, city and interest tags per cluster, in one query."""
    assign = labels.select("customer_id", "cluster")
    parts = []
    for source, col in CATEGORICAL_FIELDS:
        if guards.is_sensitive(col, sensitive) or not ctx.warehouse.has_table(source):
            continue
        table = ctx.table(source)
        if col not in table.columns:
            continue
        t = table.select(_cid="customer_id", value=table[col].cast("string"))
        j = assign.join(t, assign.customer_id == t._cid)
        parts.append(j.select("cluster", field=ibis.literal(col), value=j.value))
    customers = ctx.table("customers") if ctx.warehouse.has_table("customers") else None
    if (
        customers is not None
        and "interests" in customers.columns
        and not guards.is_sensitive("interests", sensitive)
    ):
        tags = customers.select(_cid="customer_id", value=customers.interests.split(";").unnest())
        j = assign.join(tags, assign.customer_id == tags._cid)
        parts.append(j.select("cluster", field=ibis.literal("interest"), value=j.value.strip()))
    if not parts:
        return {}
    union = parts[0]
    for p in parts[1:]:
        union = union.union(p, distinct=False)
    union = union.filter(union.value.notnull() & (union.value != ""))
    rows = union.group_by("cluster", "field", "value").aggregate(n=ibis._.count()).to_pyarrow().to_pylist()
    total = max(int(sizes.sum()), 1)
    base: dict[tuple[str, str], int] = {}
    for r in rows:
        base[(r["field"], r["value"])] = base.get((r["field"], r["value"]), 0) + int(r["n"])
    out: dict[int, dict[str, list[CategoryFact]]] = {}
    for r in rows:
        c = int(r["cluster"])
        fact = CategoryFact(
            r["field"],
            r["value"],
            int(r["n"]) / max(int(sizes[c]), 1),
            base[(r["field"], r["value"])] / total,
        )
        out.setdefault(c, {}).setdefault(r["field"], []).append(fact)
    for per in out.values():
        for facts in per.values():
            facts.sort(key=lambda f: (-f.share, f.value))
    return out


# -- naming and writing ------------------------------------------------------------------------
def build_personas(facts: list[ClusterFacts], currency: str | None = None) -> list[Persona]:
    """One persona per cluster: name, tagline, description paragraph, value and traits.

    Names are made unique across the set by adding the next distinguishing word (or a number).
    """
    personas = [_persona(f, currency) for f in facts]
    seen: dict[str, int] = {}
    for p, f in zip(personas, facts, strict=True):
        if p.name in seen:
            extra = [w for w in _adjectives(f, limit=6) if w.lower() not in p.name.lower()]
            candidate = f"{p.name} ({extra[0]})" if extra else p.name
            if candidate in seen or candidate == p.name:
                candidate = f"{p.name} {seen[p.name] + 1}"
            seen[p.name] += 1
            p.name = candidate
        seen.setdefault(p.name, 1)
    return personas


def persona_name(f: ClusterFacts) -> str:
    """The generated name: up to three adjectives from the strongest traits and a noun."""
    words = _adjectives(f, limit=3) + [_noun(f)]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _d(f: ClusterFacts, feature: str) -> float:
    fact = f.numeric.get(feature)
    return fact.std_diff if fact is not None else 0.0


def _mean(f: ClusterFacts, feature: str) -> float | None:
    fact = f.numeric.get(feature)
    return fact.mean if fact is not None else None


def _adjectives(f: ClusterFacts, limit: int) -> list[str]:
    """Candidate adjectives with their strength; the strongest ``limit`` in a fixed slot order."""
    cands: list[tuple[int, float, str]] = []  # (slot, strength, word)
    age, d_age = _median(f, "age"), _d(f, "age")
    if age is not None and abs(d_age) >= STRONG:
        if d_age < 0:
            cands.append((0, abs(d_age), "young" if age < 35 else "younger"))
        else:
            cands.append((0, abs(d_age), "senior" if age >= 55 else "older"))
    if _d(f, "recency_days") >= STRONG:
        cands.append((1, _d(f, "recency_days"), "lapsed"))
    elif _d(f, "tenure_days") <= -VERY_STRONG:
        cands.append((1, -_d(f, "tenure_days"), "new"))
    d_dist, d_store = _d(f, "store_distance_km"), _d(f, "store_order_share")
    if d_dist <= -STRONG:
        cands.append((2, -d_dist, "local" if d_store >= STRONG else "urban"))
    elif d_dist >= STRONG:
        cands.append((2, d_dist, "suburban"))
    d_aov = _d(f, "avg_order_value")
    if d_aov >= VERY_STRONG:
        cands.append((3, d_aov, "high-value"))
    elif d_aov <= -VERY_STRONG:
        cands.append((3, -d_aov, "small-basket"))
    if _d(f, "frequency") >= VERY_STRONG:
        cands.append((3, _d(f, "frequency"), "frequent"))
    d_mail = max(_d(f, "email_opens_90d"), _d(f, "email_clicks_90d"))
    if d_mail >= STRONG:
        cands.append((4, d_mail, "e-mail-engaged"))
    chosen = sorted(cands, key=lambda c: (-c[1], c[0]))[:limit]
    return [w for _, _, w in sorted(chosen, key=lambda c: c[0])]


def _noun(f: ClusterFacts) -> str:
    if _d(f, "store_order_share") >= VERY_STRONG:
        return "store regulars"
    cats = sorted(
        ((fact.std_diff, name) for name, fact in f.numeric.items() if name in f.categories), reverse=True
    )
    strong = [(d, name) for d, name in cats if d >= STRONG]
    if not strong:
        return "shoppers"
    first = f.categories[strong[0][1]]
    if first in NOUNS:
        return NOUNS[first]
    if len(strong) > 1 and strong[1][0] >= VERY_STRONG and f.categories[strong[1][1]] not in NOUNS:
        return f"{first} & {f.categories[strong[1][1]]} shoppers"
    return f"{first} shoppers"


def _persona(f: ClusterFacts, currency: str | None) -> Persona:
    name = persona_name(f)
    money = _money_fmt(currency)
    aov = _mean(f, "avg_order_value")
    traits = _traits(f, money)
    return Persona(
        cluster=f.cluster,
        name=name,
        tagline=_tagline(name, f),
        description=_description(f, money),
        size=f.size,
        share=round(f.share, 4),
        revenue=round(f.revenue, 2),
        revenue_share=round(f.revenue_share, 4),
        avg_clv=round(f.avg_clv, 2) if f.avg_clv is not None else None,
        avg_order_value=round(aov, 2) if aov is not None else None,
        traits=traits,
    )


def _tagline(name: str, f: ClusterFacts) -> str:
    parts = [name]
    band = _top(f, "age_band")
    if band is not None and band.share >= 0.4:
        parts.append(band.value.replace("-", "–"))
    rhythm = _rhythm(f.order_interval_days)
    if rhythm:
        parts.append(f"buy {rhythm}")
    level = _engagement_level(f)
    if level:
        parts.append(f"{level} e-mail engagement")
    return ", ".join(parts)


def _description(f: ClusterFacts, money: Any) -> str:
    s: list[str] = []
    value = (
        f"{f.size:,} customers ({f.share:.0%} of customers with orders) "
        f"bringing {f.revenue_share:.0%} of revenue"
    )
    if f.avg_clv is not None:
        value += f", with an average CLV of {money(f.avg_clv)}"
    s.append(value + ".")
    who = []
    band = _top(f, "age_band")
    if band is not None:
        lead = "most are aged" if band.share >= 0.5 else "the largest age group is"
        who.append(
            f"{lead} {band.value.replace('-', '–')} ({band.share:.0%} vs {band.base_share:.0%} overall)"
        )
    else:
        age = _median(f, "age")
        if age is not None:
            who.append(f"median age {age:.0f}")
    city = _top(f, "city")
    dist = _median(f, "store_distance_km")
    where = ""
    if city is not None and city.share >= 0.25 and city.lift >= 1.2:
        where = f"living mainly in {city.value} ({city.share:.0%} vs {city.base_share:.0%} overall)"
    if dist is not None:
        where += (", " if where else "living ") + f"a median {dist:.1f} km from the nearest store"
    if where:
        who.append(where)
    if who:
        sentence = "; ".join(who)
        s.append(sentence[:1].upper() + sentence[1:] + ".")
    freq, recency = _mean(f, "frequency"), _median(f, "recency_days")
    tenure = _median(f, "tenure_days")
    rhythm = _rhythm(f.order_interval_days)
    buy = []
    if rhythm:
        buy.append(f"They buy {rhythm} (median {f.order_interval_days:.0f} days between orders)")
    elif freq is not None:
        buy.append("They have bought once or twice")
    if freq is not None:
        buy.append(
            f"{freq:.1f} orders on average"
            + (f" over a median {tenure / 365.25:.1f} years" if tenure else "")
        )
    if recency is not None:
        buy.append(f"the last one a median {recency:.0f} days ago")
    if buy:
        s.append(", ".join(buy) + ".")
    aov = _mean(f, "avg_order_value")
    spend = []
    if aov is not None:
        spend.append(
            f"An average order is {money(aov)} (base {money(f.numeric['avg_order_value'].base_mean)})"
        )
    top_cats = sorted(
        ((fact.mean, f.categories[name]) for name, fact in f.numeric.items() if name in f.categories),
        reverse=True,
    )[:3]
    if top_cats and top_cats[0][0] > 0:
        spend.append("spent mostly on " + ", ".join(f"{c} ({m:.0%})" for m, c in top_cats if m >= 0.05))
    if spend:
        s.append(", ".join(spend) + ".")
    channel = []
    store = _mean(f, "store_order_share")
    if store is not None:
        channel.append(f"{store:.0%} of their orders are placed in a store")
    pref = _top(f, "preferred_channel")
    if pref is not None:
        channel.append(f"they engage most through {pref.value} ({pref.share:.0%})")
    if channel:
        text = "; ".join(channel)
        s.append(text[:1].upper() + text[1:] + ".")
    opens, clicks = _mean(f, "email_opens_90d"), _mean(f, "email_clicks_90d")
    if opens is not None:
        level = _engagement_level(f) or "average"
        base_opens = f.numeric["email_opens_90d"].base_mean
        text = (
            f"E-mail engagement is {level}: {opens:.1f} opens"
            + (f" and {clicks:.1f} clicks" if clicks is not None else "")
            + f" in the 90 days before {f.as_of} (base {base_opens:.1f} opens)."
        )
        s.append(text)
    interests = [t for t in f.categorical.get("interest", []) if t.lift >= MIN_LIFT][:3]
    if interests:
        s.append(
            "Interests: "
            + ", ".join(f"{t.value} ({t.share:.0%} vs {t.base_share:.0%})" for t in interests)
            + "."
        )
    return " ".join(s)


def _traits(f: ClusterFacts, money: Any) -> list[Trait]:
    out: list[Trait] = []
    for name, fact in f.numeric.items():
        if abs(fact.std_diff) < 0.3:
            continue
        fmt = _value_fmt(fact.unit, money)
        out.append(
            Trait(
                name,
                "numeric",
                round(fact.mean, 4),
                round(fact.base_mean, 4),
                round(fact.std_diff, 3),
                None,
                f"{fact.label}: {fmt(fact.mean)} vs {fmt(fact.base_mean)} overall ({fact.std_diff:+.1f} sd)",
            )
        )
    for fld, facts in f.categorical.items():
        for fact in facts[:5]:
            if fact.lift < MIN_LIFT or fact.share < 0.2:
                continue
            label = "interest" if fld == "interest" else fld.replace("_", " ")
            out.append(
                Trait(
                    fld,
                    "interest" if fld == "interest" else "category",
                    fact.value,
                    round(fact.base_share, 4),
                    None,
                    round(fact.lift, 3),
                    f"{label} {fact.value}: {fact.share:.0%} vs {fact.base_share:.0%} overall "
                    f"(lift {fact.lift:.1f})",
                )
            )
    # Rank numeric traits by |sd| and categorical ones by lift on a comparable scale (lift 3 ~ 1 sd).
    out.sort(key=lambda t: -(abs(t.std_diff) if t.std_diff is not None else 0.6 * np.log2(t.lift or 1.0)))
    return out[:MAX_TRAITS]


def _top(f: ClusterFacts, fld: str) -> CategoryFact | None:
    facts = f.categorical.get(fld) or []
    return facts[0] if facts else None


def _median(f: ClusterFacts, feature: str) -> float | None:
    fact = f.numeric.get(feature)
    if fact is None or fact.median != fact.median:
        return None
    return fact.median


def _rhythm(days: float | None) -> str | None:
    if days is None or days != days:
        return None
    if days <= 10:
        return "weekly"
    if days <= 21:
        return "fortnightly"
    if days <= 45:
        return "monthly"
    if days <= 120:
        return "every few months"
    if days <= 240:
        return "twice a year"
    return "yearly or less"


def _engagement_level(f: ClusterFacts) -> str | None:
    if "email_opens_90d" not in f.numeric and "email_clicks_90d" not in f.numeric:
        return None
    d = max(_d(f, "email_opens_90d"), _d(f, "email_clicks_90d"))
    if d >= STRONG:
        return "high"
    if d <= -STRONG:
        return "low"
    return "average"


def _money_fmt(currency: str | None) -> Any:
    def fmt(v: float) -> str:
        return f"{v:,.0f} {currency}" if currency else f"{v:,.0f}"

    return fmt


def _value_fmt(unit: str, money: Any) -> Any:
    if unit == "money":
        return money
    if unit == "share":
        return lambda v: f"{v:.0%}"
    if unit == "km":
        return lambda v: f"{v:.1f} km"
    if unit in ("days", "years"):
        return lambda v: f"{v:.0f} {unit}"
    return lambda v: f"{v:.1f}"


def _float(value: Any) -> float | None:
    """A nullable aggregate as a float (None for SQL NULL or NaN)."""
    return None if value is None or value != value else float(value)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    return obj


__all__ = ["FEATURES", "ClusterFacts", "Persona", "Trait", "build_personas", "cluster_facts", "persona_name"]
