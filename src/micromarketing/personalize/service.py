"""The personalisation sub-facades: ``ws.templates``, ``ws.offers`` and ``ws.recommender``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd

from micromarketing.errors import InvalidInputError, NotFoundError
from micromarketing.personalize import offers, recommend, templates
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.segments import Segments
from micromarketing.store.context import StoreContext


class Templates:
    """Stored, sandboxed message templates: add, list, preview, check and render."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx

    def add(
        self, name: str, parts: Mapping[str, str] | Iterable[str | os.PathLike[str]]
    ) -> templates.TemplateInfo:
        """Store a new version of template ``name`` from part files or sources."""
        return templates.add_template(self.ctx, name, parts)

    def add_block(
        self, path_or_name: str | os.PathLike[str], source: str | None = None
    ) -> templates.TemplateInfo:
        """Store a new version of a reusable block."""
        return templates.add_block(self.ctx, path_or_name, source)

    def install_examples(self) -> templates.TemplateInfo:
        """Store the shipped example template and blocks."""
        return templates.install_examples(self.ctx)

    def get(self, name: str, version: int | None = None) -> templates.TemplateInfo:
        """One template version (default: the latest)."""
        return templates.get_template(self.ctx, name, version)

    def list(self) -> list[templates.TemplateInfo]:
        """The latest version of every template and block."""
        return templates.list_templates(self.ctx)

    def preview(
        self,
        name: str,
        customer_id: str,
        *,
        k: int = 5,
        version: int | None = None,
        segment: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> templates.RenderedMessage:
        """Render template ``name`` for one customer."""
        return templates.preview_template(
            self.ctx, name, customer_id, k=k, version=version, segment=segment, extra=extra
        )

    def check(
        self,
        name: str,
        segment: str,
        *,
        k: int = 5,
        version: int | None = None,
        extra: Mapping[str, Any] | None = None,
        max_failures: int = 1000,
    ) -> templates.CheckReport:
        """Render for every member of ``segment`` and report the failures."""
        return templates.check_template(
            self.ctx, name, segment, k=k, version=version, extra=extra, max_failures=max_failures
        )

    def render(
        self,
        name: str,
        customers: str | Sequence[str],
        *,
        k: int = 5,
        version: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Iterator[templates.RenderedMessage]:
        """Render template ``name`` for a segment's members or a list of customer ids."""
        return templates.render_for_customers(self.ctx, name, customers, k=k, version=version, extra=extra)


class Offers:
    """Offers and the next-best-offer choice."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx

    def add(
        self,
        name: str,
        *,
        kind: str,
        value: float,
        cost: float = 0.0,
        rule: str = "",
        valid_from: date | None = None,
        valid_to: date | None = None,
        headline: str | None = None,
        replace: bool = False,
    ) -> offers.OfferInfo:
        """Store offer ``name`` (a new version with ``replace``)."""
        return offers.add_offer(
            self.ctx,
            name,
            kind=kind,
            value=value,
            cost=cost,
            rule=rule,
            valid_from=valid_from,
            valid_to=valid_to,
            headline=headline,
            replace=replace,
        )

    def get(self, name: str) -> offers.OfferInfo:
        """The current version of offer ``name``."""
        return offers.get_offer(self.ctx, name)

    def list(self) -> list[offers.OfferInfo]:
        """Every offer's current version."""
        return offers.list_offers(self.ctx)

    def fit_propensity(self) -> offers.PropensityModel:
        """Fit the acceptance model on past offer outcomes and store it as a new version."""
        return offers.fit_propensity(self.ctx)

    def next_best(
        self,
        customer_ids: Sequence[str] = (),
        *,
        segment: str | None = None,
        on: date | None = None,
        margin_rate: float | None = None,
    ) -> pd.DataFrame:
        """The offer with the highest expected margin per customer (the ids, plus a segment's members)."""
        ids = list(customer_ids)
        if segment:
            ids += Segments(self.ctx).member_table(segment).customer_id.execute().tolist()
        if not ids:
            raise InvalidInputError("give customer ids or a segment")
        return offers.next_best_offer(self.ctx, ids, on=on, margin_rate=margin_rate)


class Recommender:
    """Product recommendations: fit, evaluate and recommend."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx

    def fit(
        self,
        *,
        method: str | None = None,
        as_of: date | None = None,
        params: dict[str, Any] | None = None,
        progress: ProgressCallback = noop_progress,
    ) -> recommend.FitResult:
        """Fit the recommender and store it as a new version."""
        return recommend.fit_recommender(
            self.ctx, method=method, as_of=as_of, params=params, progress=progress
        )

    def evaluate(
        self,
        *,
        method: str | None = None,
        k: int = 10,
        holdout_days: int = 90,
        as_of: date | None = None,
        params: dict[str, Any] | None = None,
        progress: ProgressCallback = noop_progress,
    ) -> recommend.Evaluation:
        """Fit on the data before a holdout window and score the ranking on it."""
        return recommend.evaluate(
            self.ctx,
            method=method,
            k=k,
            holdout_days=holdout_days,
            as_of=as_of,
            params=params,
            progress=progress,
        )

    def recommend(
        self,
        customer_ids: list[str] | tuple[str, ...],
        k: int = 5,
        *,
        version: int | None = None,
        as_of: date | None = None,
    ) -> pd.DataFrame:
        """The top ``k`` products per customer."""
        return recommend.recommend_for(self.ctx, customer_ids, k, version=version, as_of=as_of)

    def products_for(self, customer_id: str, k: int = 5) -> pd.DataFrame:
        """The top ``k`` products of one customer with their name, category and price.

        Raises NotFoundError for an unknown customer (or one with nothing to recommend)."""
        frame = self.recommend([customer_id], k)
        if frame.empty:
            raise NotFoundError(f"customer {customer_id!r} not found (or nothing to recommend)")
        products = self.ctx.table("products").select("product_id", "name", "category", "price").to_pandas()
        return frame.merge(products, on="product_id", how="left")

    def info(self) -> list[dict[str, Any]]:
        """The stored recommender versions."""
        return recommend.recommender_info(self.ctx)
