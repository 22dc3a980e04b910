"""How the CLI shows results to people: every Rich table and line of text, in one place.

A view takes a command's result (and, by name, any keyword-only argument of the command it
needs) and prints it; ``*_json`` functions give the shape ``--json`` prints where it is not the
result itself.  Nothing here reads a store or decides anything.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from micromarketing.cli._common import console, err_console, print_json

# -- shared cells ------------------------------------------------------------------------------


def _num(value: float | None, fmt: str = ",.2f") -> str:
    return "–" if value is None else format(value, fmt)


def _money(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        err_console.print(f"[yellow]warning:[/] {w}", markup=True, highlight=False)


def _pairs(title: str, values: dict[str, object]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in values.items():
        if value is not None:
            table.add_row(key, f"{value:,.2f}" if isinstance(value, float) else str(value))
    return table


# -- init, datasets, ingest, profile, customers ------------------------------------------------


def init_json(ws: Any) -> dict[str, Any]:
    return {"workspace": str(ws.root), "warehouse": str(ws.warehouse.path), "ops": ws.ops.url,
            "currency": ws.settings.ingest.currency}


def init(ws: Any) -> None:
    console.print(f"Created workspace [bold]{ws.root}[/]")


def datasets_generate(result: Any, *, customers: int, seed: int) -> None:
    table = Table(title=f"Generated {customers:,} customers (seed {seed}) in {result.out}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("file")
    for name, path in result.paths.items():
        table.add_row(name, f"{result.rows[name]:,}", path.name)
    console.print(table)
    console.print("truth.csv names each customer's planted segment (for tests; do not ingest it).")
    if "params" in result.paths:
        console.print("params.json holds the generating BG/NBD and Gamma-Gamma parameters (unit: weeks).")


def datasets_cdnow(written: dict[str, Any]) -> None:
    console.print(f"Wrote {written['rows']:,} CDNOW {written['which']} transactions of "
                  f"{written['customer_count']:,} customers to [bold]{written['transactions']}[/] and "
                  f"{Path(written['customers']).name}")


def ingest(results: list[Any], *, kind: str) -> None:
    table = Table(title=f"Ingested {kind}")
    for column, justify in (("file", "left"), ("rows", "right"), ("accepted", "right"),
                            ("rejected", "right"), ("quarantine", "left")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in results:
        table.add_row(str(r.path), f"{r.rows_read:,}", f"{r.accepted:,}", f"{r.rejected:,}",
                      str(r.quarantine_path) if r.quarantine_path else "-")
    console.print(table)
    for r in results:
        for warning in r.warnings:
            err_console.print(f"[yellow]warning:[/] {r.path}: {warning}", highlight=False)
        for reason, count in list(r.reasons.items())[:10]:
            console.print(f"  {r.path.name}: {count:,} × {reason}", highlight=False, markup=False)


def profile_json(built: tuple[Any, pd.DataFrame]) -> dict[str, Any]:
    result, summary = built
    return {**result.model_dump(), "rfm_segments": summary.to_dict(orient="records")}


def profile(built: tuple[Any, pd.DataFrame]) -> None:
    result, summary = built
    console.print(
        f"Profiled [bold]{result.customers:,}[/] customers ({result.with_orders:,} with orders) "
        f"as of {result.as_of}"
    )
    console.print(rfm_table(summary, result.currency))


def rfm_table(summary: pd.DataFrame, currency: str | None) -> Table:
    """The RFM summary as a Rich table (``profile`` and ``demo``)."""
    table = Table(title="RFM segments")
    for column in ("segment", "customers", "share", f"revenue ({currency or '-'})", "revenue share"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    for row in summary.itertuples():
        table.add_row(
            row.rfm_segment,
            f"{row.customers:,}",
            f"{row.share:.1%}",
            f"{row.revenue:,.0f}",
            f"{row.revenue_share:.1%}",
        )
    return table


def customer(view: Any) -> None:
    console.print(_pairs("Customer " + view.customer_id, view.attributes))
    if view.profile:
        console.print(_pairs("Profile", view.profile))
    orders_table = Table(title="Recent orders")
    for column in ("order", "date", "lines", "amount", "channel"):
        orders_table.add_column(column)
    for order in view.recent_orders:
        orders_table.add_row(
            str(order["order_id"]),
            str(order["ordered_at"])[:19],
            str(order["lines"]),
            f"{order['amount']:,.2f} {order['currency'] or ''}",
            str(order["channel"] or ""),
        )
    console.print(orders_table)
    consent = ", ".join(f"{channel}: {status}" for channel, status in sorted(view.consent.items()))
    console.print(f"Consent: {consent or 'none recorded'}")


# -- clv ----------------------------------------------------------------------------------------


def clv_fit(result: Any) -> None:
    title = f"CLV model v{result.version}: {result.model} + Gamma-Gamma, as of {result.as_of} (time unit {result.unit_days:g} days)"  # noqa: E501
    table = Table(title=title)
    for col in ("model", "parameter", "estimate", "std. error"):
        table.add_column(col, justify="left" if col in ("model", "parameter") else "right")
    for name, value in result.params.items():
        table.add_row(result.model, name, f"{value:.4f}", f"{result.std_errors[name]:.4f}")
    for name, value in result.spend_params.items():
        table.add_row("gamma_gamma", name, f"{value:.4f}", f"{result.spend_std_errors[name]:.4f}")
    console.print(table)
    if result.limit is not None and result.model == "bgnbd":
        console.print(
            f"dropout is homogeneous: a, b -> infinity (the limit model, {result.limit}); every customer "
            f"drops out with probability p_dropout = {result.params['p_dropout']:.4f} after a purchase"
        )
    elif result.limit is not None:
        console.print(
            f"dropout is homogeneous: s, beta -> infinity (the limit model, {result.limit}); every "
            f"customer's lifetime is exponential with dropout_rate = {result.params['dropout_rate']:.4g} "
            f"per {result.unit_days:g} days"
        )
    if result.spend_limit == "constant_customer_spend":
        console.print(
            f"spend is constant per customer: p -> infinity (the limit model, {result.spend_limit}); "
            f"customers' mean spends are inverse-gamma with q = {result.spend_params['q']:.4f}, "
            f"scale = {result.spend_params['scale']:.4f}"
        )
    elif result.spend_limit is not None:
        console.print(
            f"customers do not differ in expected spend: q, gamma -> infinity (the limit model, "
            f"{result.spend_limit}); every purchase is gamma with shape p = {result.spend_params['p']:.4f} "
            f"and mean {result.spend_params['mean_spend']:.4f}"
        )
    console.print(
        f"{result.model}: log-likelihood {result.loglik:,.2f}, "
        f"{'converged' if result.converged else '[bold red]NOT converged[/]: ' + result.message}, "
        f"{result.n_customers:,} customers"
    )
    console.print(
        f"gamma_gamma: log-likelihood {result.spend_loglik:,.2f}, "
        f"{'converged' if result.spend_converged else '[bold red]NOT converged[/]'}, "
        f"{result.n_repeaters:,} repeat customers; non-repeaters' spend per purchase "
        f"{result.non_repeater_spend:,.2f} ({result.spend_mean_source.replace('_', ' ')})"
    )
    if result.by is not None:
        groups = Table(
            title=f"Models by {result.by} (groups under {result.min_group_size:,} customers: pooled)"
        )
        for col in ("group", "customers", "model", "parameters", "converged"):
            groups.add_column(col, justify="right" if col == "customers" else "left")
        for g in result.groups:
            own = g.fit
            params = ", ".join(f"{k}={v:.4g}" for k, v in (own or result).params.items())
            groups.add_row(
                g.group,
                f"{g.customers:,}",
                "own" if own else f"pooled ({g.reason})",
                params,
                str(own.converged and own.spend_converged) if own else "",
            )
        console.print(groups)


def to_dict(result: Any) -> dict[str, Any]:
    """The JSON of a result that writes its own dict."""
    return result.to_dict()


def clv_backtest(result: Any) -> None:
    payload = result.to_dict()
    table = Table(
        title=f"Holdout repeat transactions, {payload['calibration_end']} < day <= {payload['holdout_end']}"
        + (f", by {payload['by']}" if payload["by"] else "")
    )
    for col in ("group", "customers", "actual", "predicted", "error", "pooled fit", "pooled error"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for row in [*payload["groups"], {"group": "total", **payload["total"]}]:
        table.add_row(
            row["group"],
            f"{row['customers']:,}",
            f"{row['actual']:,}",
            f"{row['predicted']:,.1f}",
            _error(row["predicted"], row["actual"]),
            f"{row['predicted_pooled']:,.1f}",
            _error(row["predicted_pooled"], row["actual"]),
        )
    console.print(table)


def _error(predicted: float, actual: int) -> str:
    return f"{(predicted - actual) / actual:+.1%}" if actual else "-"


def clv_validation_json(result: Any) -> dict[str, Any]:
    return result.payload


def clv_validation(result: Any, *, report: Path | None) -> None:
    p = result.payload
    table = Table(title=f"Calibration to {p['calibration_end']}, holdout to {p['holdout_end']}")
    for col in ("model", "parameters", "log-likelihood"):
        table.add_column(col)
    table.add_row("BG/NBD", _params(p["bgnbd"]), f"{p['bgnbd']['loglik']:,.2f}")
    table.add_row(
        "Pareto/NBD", _params(p["paretonbd"]), f"{p['paretonbd']['loglik']:,.2f}"
    )
    table.add_row(
        "Gamma-Gamma", _params(p["gamma_gamma"]), f"{p['gamma_gamma']['loglik']:,.2f}"
    )
    console.print(table)
    h = p["holdout"]
    console.print(
        f"{p['n_customers']:,} customers, {p['n_repeaters']:,} repeaters. Holdout repeat transactions: "
        f"actual {h['actual']:,}, BG/NBD {h['predicted_bgnbd']:,.1f}, Pareto/NBD {h['predicted_paretonbd']:,.1f}"  # noqa: E501
    )
    freq = Table(title="Holdout transactions per customer by calibration frequency")
    for col in ("frequency", "customers", "actual", "BG/NBD", "Pareto/NBD"):
        freq.add_column(col, justify="right")
    for row in p["by_frequency"]:
        freq.add_row(
            row["frequency"],
            f"{row['customers']:,}",
            *(f"{row[k] or 0:.3f}" for k in ("actual", "bgnbd", "paretonbd")),
        )
    console.print(freq)
    if report is not None:
        console.print(f"Report written to [bold]{report}[/]")


def _params(values: dict[str, Any]) -> str:
    """The estimated parameters of one model (a limit model has fewer: those with a standard error)."""
    return ", ".join(f"{n}={values[n]:.4g}" for n in values["std_errors"])


# -- segments -----------------------------------------------------------------------------------


def segment_created(result: Any) -> None:
    console.print(
        f"Segment [bold]{result.segment}[/] v{result.version}: {result.size:,} members as of {result.as_of}"
    )
    _warn(result.warnings)


def segment_preview(p: Any, *, name: str | None) -> None:
    console.print(f"[bold]{name or p.rule}[/] as of {p.as_of}")
    console.print(f"  size           {p.size:,} of {p.base_size:,} ({p.share_of_base:.1%} of the base)")
    if p.revenue_share is not None:
        console.print(f"  revenue share  {p.revenue_share:.1%}")
    if p.average_clv is not None:
        console.print(f"  average CLV    {p.average_clv:,.2f}")
    if p.differences:
        table = Table(title="How it differs from the base")
        table.add_column("field")
        table.add_column("difference")
        for d in p.differences:
            table.add_row(d.field, d.detail)
        console.print(table)
    if p.sample:
        table = Table(title=f"Sample ({len(p.sample)})")
        for col in p.sample[0]:
            table.add_column(col)
        for row in p.sample:
            table.add_row(*[_segment_cell(v) for v in row.values()])
        console.print(table)
    _warn(p.warnings)


def _segment_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, datetime):
        return value.date().isoformat()
    return str(value)


def segment_list(infos: list[Any]) -> None:
    table = Table(title="Segments")
    for col in ("name", "kind", "version", "size", "as of", "rule / description"):
        table.add_column(col, justify="right" if col in ("version", "size") else "left")
    for i in infos:
        table.add_row(
            i.name,
            i.kind,
            str(i.version),
            "-" if i.size is None else f"{i.size:,}",
            str(i.as_of or "-"),
            i.rule or i.description,
        )
    console.print(table)


def segment_members(written: dict[str, Any]) -> None:
    console.print(
        f"Wrote {written['members']:,} members of [bold]{written['segment']}[/] to {written['path']}"
    )


def segment_overlap(o: Any) -> None:
    table = Table(title="Shared members")
    table.add_column("segment")
    for n in o.names:
        table.add_column(n, justify="right")
    for a in o.names:
        table.add_row(a, *[f"{o.shared[a][b]:,}" for b in o.names])
    console.print(table)
    _warn(o.warnings)


def segment_sql(compiled: dict[str, str]) -> None:
    typer.echo(compiled["sql"])


def segment_fairness(report: Any, *, name: str) -> None:
    console.print(f"[bold]{name}[/]: {report.size:,} members of {report.base_size:,}")
    for f in report.fields:
        table = Table(
            title=f"{f.field} (disparate impact "
            f"{'n/a' if f.disparate_impact is None else f'{f.disparate_impact:.2f}'})"
        )
        for col in ("group", "base", "segment", "base share", "segment share", "selection rate", "ratio"):
            table.add_column(col, justify="left" if col == "group" else "right")
        for g in f.groups:
            table.add_row(
                g.value,
                f"{g.base_count:,}",
                f"{g.segment_count:,}",
                f"{g.base_share:.1%}",
                f"{g.segment_share:.1%}",
                f"{g.selection_rate:.1%}",
                "-" if g.impact_ratio is None else f"{g.impact_ratio:.2f}",
            )
        console.print(table)
        if f.flagged:
            err_console.print(
                f"[yellow]warning:[/] {f.field}: disparate-impact ratio {f.disparate_impact:.2f} "
                "is below 0.8 (four-fifths rule)",
                markup=True,
                highlight=False,
            )
    if not report.fields:
        console.print("No sensitive fields in the warehouse to compare on.")


def segment_discovery(result: Any, *, dry_run: bool) -> None:
    how = f"k={result.k} chosen by {result.criterion}" if result.k_mode == "auto" else f"k={result.k} (fixed)"
    console.print(
        f"Discovered [bold]{result.k}[/] segments among {result.customers:,} customers with orders "
        f"as of {result.as_of} ({how})."
    )
    if result.fitted_on < result.customers:
        console.print(
            f"k-means was fitted on a sample of {result.fitted_on:,} customers; every customer was "
            "assigned in the warehouse."
        )
    if result.excluded_no_orders:
        console.print(
            f"{result.excluded_no_orders:,} customers without orders were not clustered "
            "(select them with the rule `frequency = 0`)."
        )
    if result.scores:
        scores = Table(title="Choosing k")
        for col in ("k", "stability (ARI)", "silhouette", "smallest cluster"):
            scores.add_column(col, justify="right")
        for s in result.scores:
            style = "bold green" if s.k == result.k else None
            scores.add_row(
                str(s.k), f"{s.stability:.3f}", f"{s.silhouette:.3f}", f"{s.smallest:,}", style=style
            )
        console.print(scores)
    table = Table(title="Personas" + (" (dry run: nothing saved)" if dry_run else ""), show_lines=True)
    table.add_column("segment")
    table.add_column("persona")
    table.add_column("size", justify="right")
    table.add_column("revenue", justify="right")
    table.add_column("avg order", justify="right")
    table.add_column("distinguishing traits")
    for seg in result.segments:
        p = seg.persona
        label = seg.name + (f" v{seg.version}" if seg.version else "")
        table.add_row(
            label,
            f"[bold]{p.name}[/]\n{p.description}",
            f"{p.size:,}\n{p.share:.0%}",
            f"{p.revenue_share:.0%}",
            "-" if p.avg_order_value is None else f"{p.avg_order_value:,.0f}",
            "\n".join(t.text for t in p.traits[:6]),
        )
    console.print(table)
    if result.retired:
        console.print(f"Retired from the previous run: {', '.join(result.retired)}")
    _warn(result.warnings)


# -- templates, recommendations, offers -------------------------------------------------------


def template_json(info: Any) -> dict[str, Any]:
    return {"name": info.name, "version": info.version, "parts": sorted(info.parts),
            "variables": info.variables}


def template_added(info: Any) -> None:
    console.print(
        f"Template [bold]{info.name}[/] v{info.version}: parts {', '.join(sorted(info.parts))}; "
        f"reads {', '.join(info.variables) or 'nothing'}"
    )


def version_json(info: Any) -> dict[str, Any]:
    return {"name": info.name, "version": info.version}


def versions_json(infos: list[Any]) -> list[dict[str, Any]]:
    return [version_json(i) for i in infos]


def template_blocks(infos: list[Any]) -> None:
    for i in infos:
        console.print(f"Block [bold]{i.name}[/] v{i.version}")


def template_version(info: Any) -> None:
    console.print(f"Template [bold]{info.name}[/] v{info.version}")


def template_list_json(infos: list[Any]) -> list[dict[str, Any]]:
    return [
        {"name": i.name, "version": i.version, "kind": i.kind, "parts": sorted(i.parts),
         "variables": i.variables}
        for i in infos
    ]


def template_list(infos: list[Any]) -> None:
    table = Table("name", "version", "kind", "parts", "variables")
    for i in infos:
        table.add_row(i.name, str(i.version), i.kind, ", ".join(sorted(i.parts)), ", ".join(i.variables))
    console.print(table)


def message_json(msg: Any) -> dict[str, Any]:
    return {"customer_id": msg.customer_id, "subject": msg.subject, "html": msg.html, "text": msg.text,
            "sms": msg.sms}


def message(msg: Any) -> None:
    for part in ("subject", "text", "sms", "html"):
        value = getattr(msg, part)
        if value is not None:
            console.rule(part)
            console.print(value, markup=False, highlight=False)


def template_check_json(report: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(report) | {"ok": report.ok}


def template_check(report: Any, *, segment: str) -> None:
    console.print(f"{report.rendered:,} of {report.recipients:,} members of [bold]{segment}[/] rendered")
    if report.sms_over_160:
        err_console.print(f"[yellow]warning:[/] {report.sms_over_160} SMS longer than 160 characters")
    for group in report.failure_groups():
        err_console.print(
            f"[red]{group['count']} failed[/] {group['reason']} (e.g. customer {group['example']})",
            highlight=False,
        )


def recommender_fit(result: Any) -> None:
    console.print(
        f"Recommender v{result.version} ({result.method}) as of {result.as_of}: "
        f"{result.customers:,} customers × {result.products:,} products, "
        f"{result.interactions:,} interactions → {result.path}"
    )


def recommendations(frame: pd.DataFrame, *, customer_id: str) -> None:
    table = Table(
        "rank", "product", "name", "category", "price", "score", title=f"Recommendations for {customer_id}"
    )
    for r in frame.itertuples(index=False):
        table.add_row(
            str(r.rank), r.product_id, str(r.name), str(r.category), f"{r.price:.2f}", f"{r.score:.3f}"
        )
    console.print(table)


def recommender_evaluation(result: Any, *, k: int) -> None:
    best = result.best_baseline()
    table = Table(
        "metric",
        f"{result.method}",
        *result.baselines,
        f"vs {best}",
        title=f"Train before {result.cutoff}, test {result.cutoff} – {result.as_of}: "
        f"{result.test_customers:,} customers",
    )
    lift = result.lift()
    for metric in ("precision", "recall", "ndcg", "coverage"):
        table.add_row(
            f"{metric}@{k}" if metric != "coverage" else metric,
            f"{getattr(result.model, metric):.4f}",
            *(f"{getattr(m, metric):.4f}" for m in result.baselines.values()),
            f"{lift[metric]:.2f}×",
        )
    if result.selection is not None:
        console.print(
            f"chosen on {result.selection.validation_start} – {result.selection.validation_end}: "
            f"{result.method} {result.params or ''}"
        )
    console.print(table)


def offer_added(info: Any) -> None:
    console.print(
        f"Offer [bold]{info.name}[/]: {info.headline} (cost {info.cost:g}; rule: {info.rule or 'everyone'})"
    )


def offer_list(offers: list[Any]) -> None:
    table = Table("name", "kind", "value", "cost", "valid", "rule")
    for o in offers:
        table.add_row(
            o.name,
            o.kind,
            f"{o.value:g}",
            f"{o.cost:g}",
            f"{o.valid_from or '…'} – {o.valid_to or '…'}",
            o.rule or "everyone",
        )
    console.print(table)


def next_best_offers(frame: pd.DataFrame, *, limit: int) -> None:
    counts = frame["offer"].fillna("(none)").value_counts()
    console.print(", ".join(f"{k}: {v:,}" for k, v in counts.items()))
    table = Table("customer", "offer", "expected margin", "propensity", "source")
    for r in frame.head(limit).itertuples(index=False):
        table.add_row(
            r.customer_id,
            str(r.offer or "—"),
            "" if r.expected_margin != r.expected_margin else f"{r.expected_margin:.2f}",
            "" if r.propensity != r.propensity else f"{r.propensity:.3f}",
            str(r.source or ""),
        )
    console.print(table)


def propensity_json(model: Any) -> dict[str, Any]:
    return {"version": model.version, "intercept": model.intercept, "coef": model.coef.tolist()}


def propensity(model: Any) -> None:
    console.print(f"Offer propensity model v{model.version} fitted")


# -- campaigns and delivery -------------------------------------------------------------------


def campaign_plan(result: Any) -> None:
    console.print(
        f"[bold]{escape(result.name)}[/]: {result.members} members, {result.control} in control, "
        f"{result.global_holdout} in the global holdout, [bold]{result.reach}[/] messages "
        f"({result.deferred} deferred by quiet hours)"
    )
    reach = Table(
        "segment/variant",
        "channel",
        "members",
        "no consent",
        "suppressed",
        "capped",
        "no address",
        "deferred",
        "reach",
        title="Reach",
    )
    money = Table(
        "segment/variant",
        "cost",
        "conversions",
        "revenue",
        "ROI",
        "MDE abs.",
        "MDE rel.",
        title="Expected returns",
    )
    for seg in result.segments:
        for v in seg.variants:
            label = escape(f"{seg.segment}/{v.variant}")
            reach.add_row(
                label,
                v.channel,
                str(v.members),
                str(v.removed.get("no_consent", 0)),
                str(v.removed.get("suppressed", 0)),
                str(v.removed.get("frequency_cap", 0)),
                str(v.removed.get("no_address", 0)),
                str(v.deferred),
                str(v.reach),
            )
            money.add_row(
                label,
                _money(v.cost),
                f"{v.expected_conversions:.1f}",
                _money(v.expected_revenue),
                _share(v.roi),
                _share(v.mde_absolute),
                _share(v.mde_relative),
            )
    console.print(reach)
    console.print(money)
    for seg in result.segments:
        console.print(
            f"{escape(seg.segment)}: {seg.members} members, {seg.control} control, "
            f"{seg.global_holdout} global holdout, {seg.in_earlier_segment} already in an earlier segment"
        )
    budget = f" of a budget of {_money(result.budget)}" if result.budget is not None else ""
    console.print(
        f"Cost {_money(result.cost)}{budget}; expected {result.expected_conversions:.1f} conversions, "
        f"revenue {_money(result.expected_revenue)}, margin {_money(result.expected_margin)}, "
        f"ROI {_share(result.roi)}"
    )
    console.print("[bold]Assumptions[/]")
    for line in result.assumptions:
        console.print(f"  • {escape(line)}", soft_wrap=True)
    for line in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)


def campaign_example(out: Path) -> None:
    console.print(f"Wrote [bold]{out}[/]: edit segments, templates and offers; then `campaign plan {out}`")


def campaign_run_json(ran: tuple[Any, Any]) -> dict[str, Any]:
    result, report = ran
    payload = result.model_dump(mode="json")
    payload["delivery"] = report.model_dump(mode="json") if report is not None else None
    return payload


def campaign_run(ran: tuple[Any, Any], *, no_deliver: bool) -> None:
    result, report = ran
    console.print(escape(result.message))
    console.print(
        f"{result.members} members: {result.control} control, {result.global_holdout} global holdout; "
        f"{result.pending} pending ({result.deferred} deferred by quiet hours), {result.skipped} skipped"
        + (
            " (" + ", ".join(f"{k} {v}" for k, v in sorted(result.skipped_by_rule.items())) + ")"
            if result.skipped_by_rule
            else ""
        )
    )
    if report is not None:
        console.print(f"Delivered: {escape(str(report))}", soft_wrap=True)
    elif not no_deliver:
        console.print("Delivery runs with `micromarketing deliver`.")


def campaign_test(result: Any) -> None:
    console.print(f"{result.messages} proofs queued ({', '.join(result.variants)}) to {', '.join(result.to)}")
    for line in result.skipped:
        err_console.print(f"[yellow]skipped:[/] {escape(line)}")


def campaign_status(result: Any) -> None:
    table = Table("state", "messages")
    for state in ("pending", "sending", "sent", "deferred", "failed", "skipped", "control", "global_holdout"):
        table.add_row(state, str(getattr(result, state)))
    console.print(f"[bold]{escape(result.name)}[/] ({result.status}), {result.members} members")
    console.print(table)


def campaign_list(result: list[Any]) -> None:
    table = Table("name", "status", "priority", "members", "messages", "created")
    for c in result:
        table.add_row(
            escape(c.name),
            c.status,
            str(c.priority),
            str(c.members),
            str(c.messages),
            c.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


def delivery_json(delivered: tuple[Any, dict[str, int]]) -> dict[str, Any]:
    report, remaining = delivered
    return {**report.model_dump(), "per_second": report.per_second, "outbox": remaining}


def delivery(delivered: tuple[Any, dict[str, int]]) -> None:
    report, remaining = delivered
    console.print(
        f"Sent [bold]{report.sent:,}[/] in {report.seconds:.1f} s ({report.per_second:,.0f}/s); "
        f"skipped {report.skipped:,}, deferred {report.deferred:,}, retrying {report.retried:,}, "
        f"failed {report.failed:,} ({report.suppressed:,} hard bounces suppressed)"
    )
    console.print("Outbox: " + ", ".join(f"{state} {n:,}" for state, n in remaining.items()))


def suppressed(result: Any, *, file: Path) -> None:
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(result.by_kind.items()))
    console.print(
        f"Suppressed [bold]{result.added:,}[/] new addresses from {file} ({kinds}); "
        f"{result.already_suppressed:,} already on the list, {result.matched_customers:,} known customers"
    )
    for line, why in sorted(result.rejected.items()):
        console.print(f"  line {line}: {why}", highlight=False)


def send_ledger(result: Any, *, customer: str) -> None:
    if not result.messages:
        console.print(f"No messages for customer {customer}")
        return
    table = Table(title=f"Send ledger of {customer}")
    for column in (
        "campaign",
        "channel",
        "variant",
        "offer",
        "message id",
        "state",
        "attempts",
        "last outcome",
    ):
        table.add_column(column)
    for m in result.messages:
        last = m.attempts[-1] if m.attempts else None
        outcome = f"{last.at:%Y-%m-%d %H:%M:%S} {last.status} {last.reason}".strip() if last else "-"
        table.add_row(
            m.campaign or "-",
            m.channel,
            m.variant or "-",
            m.offer_code or "-",
            m.message_id,
            m.state,
            str(len(m.attempts)),
            outcome,
        )
    console.print(table)


# -- measurement and reports ------------------------------------------------------------------


def _interval(interval: Any, fmt: str) -> str:
    if interval is None or interval.low is None or interval.high is None:
        return "–"
    return f"[{format(interval.low, fmt)}, {format(interval.high, fmt)}]"


def measurement(result: Any) -> None:
    console.print(
        f"Campaign [bold]{result.campaign}[/] ({result.status}, objective {result.objective}); "
        f"{result.attribution.replace('_', ' ')} attribution, {result.attribution_days}-day window; "
        f"margin {result.margin:.0%}; currency {result.currency}"
    )
    arms = Table(title="Funnel and outcomes")
    for column in (
        "segment",
        "arm",
        "assigned",
        "delivered",
        "opens",
        "clicks",
        "conversions",
        "conv. rate",
        "revenue/recipient",
        "cost",
        "incr. revenue",
        "ROI",
        f"{result.retention_days}-day retention",
    ):
        arms.add_column(column, justify="left" if column in ("segment", "arm") else "right")
    for a in result.arms:
        arms.add_row(
            a.segment,
            a.arm,
            f"{a.assigned:,}",
            f"{a.delivered:,}",
            f"{a.opens:,}",
            f"{a.clicks:,}",
            f"{a.conversions:,}",
            _num(a.conversion_rate, ".2%"),
            _num(a.revenue_per_recipient),
            _num(a.cost),
            _num(a.incremental_revenue),
            _num(a.roi, "+.2f"),
            _num(a.retention, ".1%"),
        )
    console.print(arms)
    comparisons = result.comparisons + ([result.holdout] if result.holdout else [])
    srm = Table(title="Sample ratio check (chi-square against the planned split; flagged below p = 0.001)")
    for column in ("segment", "comparison", "observed", "expected", "p-value", "flag"):
        srm.add_column(column)
    for c in comparisons:
        srm.add_row(
            c.segment,
            f"{c.treatment} vs {c.control}",
            " / ".join(f"{k} {v:,}" for k, v in c.srm.observed.items()),
            " / ".join(f"{k} {v:,.1f}" for k, v in c.srm.expected.items()),
            f"{c.srm.p_value:.3g}",
            "[bold red]MISMATCH[/]" if c.srm.flagged else (c.srm.note or "ok"),
        )
    console.print(srm)
    lifts = Table(title=f"Lift over control (95% intervals; adjusted: {result.adjustment.upper()})")
    for column in (
        "segment",
        "comparison",
        "metric",
        "treatment",
        "control",
        "absolute [95%]",
        "relative [95%]",
        "relative, adjusted",
        "relative, shrunk",
        "p",
        "p adjusted",
    ):
        lifts.add_column(column)
    for c in comparisons:
        for lift in (c.conversion, c.revenue):
            lifts.add_row(c.segment, f"{c.treatment} vs {c.control}", *_lift_cells(lift))
    console.print(lifts)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)


def _lift_cells(lift: Any) -> list[str]:
    fmt = ".2%" if lift.metric == "conversion_rate" else ",.2f"
    name = "conversion" if lift.metric == "conversion_rate" else "revenue/recipient"
    return [
        name,
        _num(lift.treatment, fmt),
        _num(lift.control, fmt),
        f"{_num(lift.absolute, '+' + fmt)} {_interval(lift.absolute_interval, fmt)}",
        f"{_num(lift.relative, '+.1%')} {_interval(lift.relative_interval, '.1%')}",
        _interval(lift.relative_interval_adjusted, ".1%"),
        _num(lift.relative_shrunk, "+.1%"),
        _num(lift.p_value, ".3g"),
        _num(lift.p_value_adjusted, ".3g"),
    ]


def allocation(result: Any) -> None:
    table = Table(
        title=f"Next round of {result.campaign}: budget {result.budget:,.2f} "
        f"(Thompson sampling, {result.draws} draws, floor {result.min_share:.0%} per arm)"
    )
    for column in ("segment", "variant", "now", "next", "budget", "messages", "ROI [95%]", "P(best)"):
        table.add_column(column, justify="left" if column in ("segment", "variant") else "right")
    for arm in result.arms:
        table.add_row(
            arm.segment,
            arm.variant,
            f"{arm.current_share:.0%}",
            f"{arm.share:.0%}",
            f"{arm.budget:,.2f}",
            f"{arm.messages:,}",
            f"{_num(arm.roi_mean, '+.2f')} {_interval(arm.roi_interval, '+.2f')}",
            f"{arm.probability_best:.0%}",
        )
    console.print(table)
    for arm in result.arms:
        console.print(f"• {arm.explanation}", soft_wrap=True)


def report_written(written: Any) -> None:
    console.print(
        f"Report written to [bold]{written.path}[/] ({written.size_bytes / 1e6:.1f} MB, "
        f"{written.charts} charts): {', '.join(written.sections)}"
    )


# -- privacy, audit, API keys ------------------------------------------------------------------


def erasure(report: Any, *, customer_id: str) -> None:
    deleted = sum(report.warehouse_rows.values()) + sum(report.ops_rows.values())
    redacted, files = sum(report.ops_redacted.values()), len(report.files_rewritten)
    console.print(f"Erased customer {customer_id.strip()} ({report.subject}): {deleted:,} rows deleted, "
                  f"{redacted:,} redacted, {files} files rewritten")
    for name, n in {**report.warehouse_rows, **report.ops_rows}.items():
        console.print(f"  {name}: {n:,}")
    for path in report.files_rewritten:
        console.print(f"  rewrote {path}")
    for path in report.files_not_inspected:
        err_console.print(f"warning: could not inspect {path} (not CSV, Parquet, JSON or text)")


def personal_data(data: Any, *, out: Path | None) -> None:
    """The access request's data: JSON on stdout, or written to ``out``."""
    if out is None:
        print_json(data)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(data.model_dump_json(indent=2) + "\n", encoding="utf-8")
    console.print(f"Wrote {data.record_count:,} records about {data.customer_id} to {out}")


def retention(report: Any, *, dry_run: bool) -> None:
    table = Table(title="Retention" + (" (dry run: nothing purged)" if dry_run else ""))
    for column in ("rule", "before", "would purge" if dry_run else "purged"):
        table.add_column(column)
    for rule, count in report.purged.items():
        table.add_row(rule, report.cutoffs[rule].isoformat(timespec="seconds"), f"{count:,}")
    console.print(table)


def consent_history(history: list[Any], *, customer_id: str) -> None:
    table = Table(title=f"Consent of {customer_id}")
    for column in ("recorded", "channel", "purpose", "status", "source", "valid until"):
        table.add_column(column)
    for r in history:
        when = r.recorded_at.isoformat(timespec="seconds")
        until = r.valid_until.isoformat(timespec="seconds") if r.valid_until else ""
        table.add_row(when, r.channel, r.purpose, r.status, r.source or "", until)
    console.print(table)


def audit_log(entries: list[Any]) -> None:
    table = Table(title="Audit log")
    for column in ("at", "actor", "action", "subject", "details"):
        table.add_column(column)
    for e in entries:
        details = ", ".join(f"{k}={v}" for k, v in e.details.items())
        table.add_row(e.at.isoformat(timespec="seconds"), e.actor, e.action, e.subject, details)
    console.print(table)


def apikey_created_json(created: Any) -> dict[str, Any]:
    return {"key": created.key, "id": created.id, "role": created.role}


def apikey_created(created: Any) -> None:
    console.print(f"Created {created.role} key {created.id} ({created.prefix}); it is shown only once:")
    typer.echo(created.key)


def apikey_list(keys: list[Any]) -> None:
    table = Table(title="API keys")
    for column in ("id", "prefix", "role", "name", "created", "last used", "revoked"):
        table.add_column(column)
    for k in keys:
        table.add_row(
            str(k.id), k.prefix, k.role, k.name, f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
        )
    console.print(table)


def apikey_revoked(info: Any) -> None:
    console.print(f"Revoked key {info.id} ({info.prefix}, {info.role})")


# -- demo --------------------------------------------------------------------------------------


def _demo_fit_line(fit: Any) -> str:
    params = ", ".join(f"{k}={v:.3g}" for k, v in fit.params.items())
    spend = ", ".join(f"{k}={v:.3g}" for k, v in fit.spend_params.items())
    tx_limit = f" (limit: {fit.limit})" if fit.limit else ""
    spend_limit = f" (limit: {fit.spend_limit})" if fit.spend_limit else ""
    return (
        f"{fit.model} {params}{tx_limit}; Gamma-Gamma {spend}{spend_limit}; log-lik {fit.loglik:,.1f}; "
        f"converged={fit.converged and fit.spend_converged}"
    )


def demo(report: Any) -> None:
    ingest = Table(title="1. Ingest")
    for column in ("file", "accepted", "rejected"):
        ingest.add_column(column, justify="left" if column == "file" else "right")
    for result in report.ingested:
        ingest.add_row(result.path.name, f"{result.accepted:,}", f"{result.rejected:,}")
    console.print(ingest)

    if report.clv is not None:
        fit = report.clv
        pooled = "pooled " if fit.by is not None else ""
        console.print(
            f"[bold]2. Customer value[/], {pooled}fit: {_demo_fit_line(fit)}; {fit.n_customers:,} customers"
        )
        if fit.by is not None:
            own = sum(g.fit is not None for g in fit.groups)
            groups = Table(
                title=f"CLV fitted per discovered segment: {own} of {len(fit.groups)} with their own "
                f"{fit.model} + Gamma-Gamma (under {fit.min_group_size:,} customers: the pooled fit)"
            )
            for column in ("segment", "customers", "model"):
                groups.add_column(column, justify="right" if column == "customers" else "left")
            for g in fit.groups:
                groups.add_row(
                    g.group, f"{g.customers:,}", _demo_fit_line(g.fit) if g.fit else f"pooled ({g.reason})"
                )
            console.print(groups)
    currency = report.profile.currency if report.profile else None
    if report.rfm is not None:
        console.print(rfm_table(report.rfm, currency))
    if report.value_tiers is not None:
        console.print(_frame_table("Value tiers (CLV)", report.value_tiers, currency))

    segments = Table(title="3. Rule segments")
    for column in ("segment", "members", "warnings"):
        segments.add_column(column)
    for m in report.rule_segments:
        segments.add_row(m.segment, f"{m.size:,}", "; ".join(m.warnings) or "-")
    console.print(segments)
    if report.discovery is not None:
        d = report.discovery
        personas = Table(title=f"Discovered micro-segments (k={d.k}, {d.criterion})")
        for column in ("segment", "persona", "size", "share", "revenue share"):
            personas.add_column(
                column, justify="right" if column in {"size", "share", "revenue share"} else "left"
            )
        for seg in d.segments:
            p = seg.persona
            personas.add_row(seg.name, p.name, f"{p.size:,}", f"{p.share:.1%}", f"{p.revenue_share:.1%}")
        console.print(personas)

    if report.recommendations is not None:
        console.print(_frame_table("4. Recommendations (sample)", report.recommendations, None))
    if report.offers is not None:
        console.print(_frame_table("Next best offer (sample)", report.offers, currency))
    if report.template_check is not None:
        check = report.template_check
        console.print(
            f"Template [bold]{check.template}[/] rendered for {check.rendered:,}/{check.recipients:,} "
            f"members of {check.segment}: {len(check.failures)} failures (nothing sent)"
        )
    _demo_campaign(report)
    timings = ", ".join(f"{step} {seconds:.1f}s" for step, seconds in report.timings.items())
    console.print(f"Workspace: [bold]{report.workspace}[/]  ({timings})")
    if report.report_file is not None:
        console.print(f"Report: [bold]{report.report_file.path}[/] (open it in a browser)")


def _demo_campaign(report: Any) -> None:
    run, delivery = report.campaign, report.delivery
    if run is None or delivery is None:
        return
    console.print(
        f"[bold]5. Campaign {run.name}[/]: {run.members:,} members, {run.control:,} held out as control; "
        f"{run.messages_inserted:,} messages queued, {run.skipped:,} skipped by the contact policy, "
        f"{run.deferred:,} deferred to the end of quiet hours"
    )
    if report.skipped_reasons:
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in report.skipped_reasons.items())
        console.print(f"   skipped: {reasons}")
    console.print(
        f"   delivered over SMTP (127.0.0.1): {delivery.sent:,} sent ({report.smtp_received:,} received by "
        f"the server), {delivery.deferred:,} deferred, {delivery.failed:,} failed, {delivery.skipped:,} "
        f"skipped at send time, in {delivery.seconds:.1f} s"
    )
    measurement = report.measurement
    if measurement is None:
        return
    console.print(
        f"[bold]6. Measured[/] {report.responses:,} simulated orders from a known true uplift "
        f"(attribution {measurement.attribution}, {measurement.attribution_days} days)"
    )
    lifts = Table(title="Lift in conversion over control (95% intervals; true lift from the simulation)")
    columns = ("segment", "variant", "SRM p", "control", "treated", "lift", "95% interval", "true", "shrunk")
    for column in columns:
        lifts.add_column(column, justify="left" if column in {"segment", "variant"} else "right")
    for c in measurement.comparisons:
        conv = c.conversion
        true = report.truth.get((c.segment, c.treatment))
        lo, hi = conv.absolute_interval.low, conv.absolute_interval.high
        lifts.add_row(
            c.segment,
            c.treatment,
            _pct(c.srm.p_value, 3),
            _pct(conv.control),
            _pct(conv.treatment),
            _pct(conv.absolute),
            f"{_pct(lo)} … {_pct(hi)}",
            _pct(true),
            _pct(conv.relative_shrunk) + " rel" if conv.relative_shrunk is not None else "-",
        )
    console.print(lifts)
    covered, compared = report.lift_coverage()
    console.print(f"   {covered} of {compared} intervals cover the true lift")
    if report.allocation is not None:
        alloc = Table(title=f"7. Next round's budget ({report.allocation.budget:,.0f})")
        for column in ("segment", "variant", "now", "next", "why"):
            alloc.add_column(column, justify="right" if column in {"now", "next"} else "left")
        for arm in report.allocation.arms:
            alloc.add_row(
                arm.segment, arm.variant, f"{arm.current_share:.0%}", f"{arm.share:.0%}", arm.explanation
            )
        console.print(alloc)


def _pct(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if digits == 3 else f"{100 * value:.{digits}f}%"


def _frame_table(title: str, frame: pd.DataFrame, currency: str | None) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.itertuples(index=False):
        table.add_row(*(_frame_cell(v) for v in row))
    return table


def _frame_cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if value != value else f"{value:,.2f}"
    return "-" if value is None else str(value)


def demo_json(report: Any) -> dict[str, Any]:
    def records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
        return [] if frame is None else frame.astype(object).where(frame.notna(), None).to_dict("records")

    return {
        "workspace": report.workspace,
        "ingested": report.ingested,
        "clv": report.clv.to_dict() if report.clv else None,
        "pooled_clv": report.pooled_clv.to_dict() if report.pooled_clv else None,
        "profile": report.profile,
        "rfm_segments": records(report.rfm),
        "value_tiers": records(report.value_tiers),
        "rule_segments": [m.__dict__ for m in report.rule_segments],
        "discovered": report.discovery,
        "recommendations": records(report.recommendations),
        "offers": records(report.offers),
        "template_check": report.template_check.__dict__ if report.template_check else None,
        "campaign": report.campaign,
        "delivery": report.delivery,
        "smtp_received": report.smtp_received,
        "skipped_reasons": report.skipped_reasons,
        "responses": report.responses,
        "true_lifts": [{"segment": s, "variant": v, "lift": x} for (s, v), x in report.truth.items()],
        "measurement": report.measurement,
        "allocation": report.allocation,
        "report": report.report_file.path if report.report_file else None,
        "timings_s": report.timings,
    }
