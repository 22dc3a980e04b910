"""The campaign plan: who each segment's variants reach, what the policy removes, what it costs
and what it may earn — computed without sending or writing anything.

:func:`draft_campaign` does the work shared with the run: members of each segment (a customer in
two segments belongs to the first), the deterministic arm of each member, the global holdout,
and the contact policy's verdict per treated member.  :func:`plan_campaign` adds the economics
and the statistical power and returns a :class:`CampaignPlan`.

Economics (the assumptions are printed with every plan):

* response rate: the offer's past conversion rate in ``offer_outcomes`` when it has at least
  ``MIN_OUTCOMES`` outcomes (all offers' rate for a variant without an offer), else the prior
  (``offers.BASE_RATE`` of the offer's kind, 2 % without an offer);
* revenue per conversion: the reached members' mean average order value (profiles);
* margin: revenue × ``[clv] margin``; cost: messages × channel cost + conversions × the offer's
  redemption cost (its ``cost``, plus the discount on the order for a discount offer);
* ROI = (margin − cost) / cost (none when nothing costs anything);
* the minimum detectable lift compares the variant's reach with the segment's control group
  (two-sided z-test, α 0.05, power 0.8; :mod:`micromarketing.measure.power`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from micromarketing.campaigns.assign import CONTROL, GLOBAL_HOLDOUT, assign_arms, in_global_holdout
from micromarketing.campaigns.ingredients import Freezer, context_from_fields, offer_context
from micromarketing.campaigns.policy import RULES, evaluate_members
from micromarketing.campaigns.results import CampaignPlan, SegmentPlan, VariantPlan
from micromarketing.campaigns.spec import CampaignSpec, VariantSpec, check_budget, check_references
from micromarketing.channels.email import email_warnings
from micromarketing.channels.sms import count_segments
from micromarketing.errors import DataError, InvalidInputError, TemplateError
from micromarketing.measure.power import minimum_detectable_lift
from micromarketing.personalize import offers as offers_mod
from micromarketing.personalize.templates import (
    CompiledTemplate,
    compile_template,
    product_catalogue,
    recommendations_by_customer,
    segment_context,
    token_secret,
)
from micromarketing.segments import Segments
from micromarketing.store.context import StoreContext

NO_OFFER_RATE = 0.02
SAMPLE_SIZE = 50
RECOMMENDATIONS = 5
#: Columns every draft reads besides what the templates need.
BASE_COLUMNS = ("customer_id", "timezone", "email", "phone", "avg_order_value", "clv")
#: Contact columns each channel's outbox rows carry (where the message goes).
CONTACT_COLUMNS: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "sms": ("phone",),
    "webhook": (),
    "direct_mail": ("first_name", "last_name", "city", "postcode", "country"),
    "audience": ("email", "phone", "first_name", "last_name", "city", "postcode", "country"),
}
ADDRESS_COLUMN = {"email": "email", "sms": "phone"}
NO_ADDRESS = "no_address"
#: What the plan counts as removed, in the order the rules apply (quiet hours defer, not remove).
REMOVED = (*(r for r in RULES if r != "quiet_hours"), NO_ADDRESS)


# ---------------------------------------------------------------------------------------------
# the draft shared by plan and run
# ---------------------------------------------------------------------------------------------
@dataclass
class VariantDraft:
    """The treated members of one variant and what the policy says about each."""

    spec: VariantSpec
    compiled: CompiledTemplate | None
    offer: dict[str, Any] | None
    rows: pa.Table  # recipients (customers ⋈ profiles columns the plan and templates need)
    verdict: pd.DataFrame  # customer_id, outcome, reason, not_before
    freezer: Freezer | None = None


@dataclass
class SegmentDraft:
    """A segment's members, each with its arm, and the drafts of its variants."""

    name: str
    context: dict[str, Any]
    customer_ids: np.ndarray
    arms: np.ndarray
    in_earlier_segment: int
    variants: list[VariantDraft] = field(default_factory=list)


@dataclass
class CampaignDraft:
    """Everything plan and run need, computed once."""

    spec: CampaignSpec
    when: datetime
    segments: list[SegmentDraft]


def _recipients(ctx: StoreContext, members: ibis.Table, columns: set[str] | None) -> pa.Table:
    """customers ⋈ profiles for ``members`` (profile columns only where customers lack them);
    ``columns`` None reads every column."""
    customers = ctx.table("customers")
    base = members.select(_cid=members.customer_id.cast("string")).distinct()
    joined = base.join(customers, base._cid == customers.customer_id).drop("_cid")
    if ctx.warehouse.has_table("profiles"):
        profiles = ctx.table("profiles")
        extra = [c for c in profiles.columns if c not in joined.columns]
        if columns is not None:
            extra = [c for c in extra if c in columns]
        if extra:
            prof = profiles.select(_pid=profiles.customer_id, **{c: profiles[c] for c in extra})
            joined = joined.left_join(prof, joined.customer_id == prof._pid).drop("_pid")
    if columns is not None:
        joined = joined.select(*[c for c in joined.columns if c in columns or c == "customer_id"])
    return joined.order_by("customer_id").to_pyarrow()


def _columns_needed(compiled: Sequence[CompiledTemplate | None], channels: set[str]) -> set[str] | None:
    wanted = set(BASE_COLUMNS)
    for channel in channels:
        wanted |= set(CONTACT_COLUMNS[channel])
    for tpl in compiled:
        if tpl is None:
            continue
        if tpl.needs("customer"):
            return None
        wanted |= tpl.reads
    return wanted


def draft_campaign(
    ctx: StoreContext,
    spec: CampaignSpec,
    *,
    when: datetime | None = None,
    campaign_id: int | None = None,
    source: str = "<campaign>",
    skip: set[str] | None = None,
) -> CampaignDraft:
    """Members, arms and policy verdicts of ``spec`` at ``when`` (default: now, or the start of
    the send window when later).  ``skip``: customer ids left out (already assigned on a re-run)."""
    check_references(ctx, spec, source)
    now = datetime.now(UTC)
    when = when or (max(now, spec.send_window.start) if spec.send_window else now)
    compiled: dict[str, CompiledTemplate] = {}
    for seg in spec.segments:
        for v in seg.variants:
            if v.template and v.template not in compiled:
                compiled[v.template] = compile_template(ctx, v.template)
    offers = {o.name: offer_context(o) for o in offers_mod.list_offers(ctx)}
    channels = {v.channel for seg in spec.segments for v in seg.variants}
    columns = _columns_needed(list(compiled.values()), channels)
    segments = Segments(ctx)
    taken: set[str] = set(skip or ())
    drafts: list[SegmentDraft] = []
    for seg in spec.segments:
        rows = _recipients(ctx, segments.member_table(seg.segment), columns)
        ids_all = np.asarray(rows.column("customer_id").to_pylist(), dtype=object)
        fresh = np.array([c not in taken for c in ids_all], dtype=bool)
        in_earlier = int((~fresh).sum()) - len(set(skip or ()) & set(ids_all.tolist()))
        rows = rows.filter(pa.array(fresh))
        ids = ids_all[fresh]
        taken.update(ids.tolist())
        arms = assign_arms(
            spec.name, ids.tolist(), spec.control_share_of(seg), [(v.name, v.share) for v in seg.variants]
        )
        if not spec.transactional:
            arms[in_global_holdout(ids.tolist(), ctx.settings.campaigns, when)] = GLOBAL_HOLDOUT
        seg_ctx = segment_context(ctx, seg.segment)
        draft = SegmentDraft(seg.segment, seg_ctx, ids, arms, max(in_earlier, 0))
        frame = rows.select(
            [c for c in ("customer_id", "timezone", "email", "phone") if c in rows.column_names]
        )
        frame = frame.to_pandas()
        for v in seg.variants:
            mask = arms == v.name
            sub = rows.filter(pa.array(mask))
            members = frame[mask].reset_index(drop=True)
            if v.channel in ADDRESS_COLUMN and ADDRESS_COLUMN[v.channel] in members:
                members = members.assign(address=members[ADDRESS_COLUMN[v.channel]])
            verdict = evaluate_members(
                ctx,
                members,
                channel=v.channel,
                when=when,
                priority=spec.priority,
                campaign_id=campaign_id,
                transactional=spec.transactional,
                topic=spec.topic,
            )
            address = ADDRESS_COLUMN.get(v.channel)
            if address is not None:
                missing = (
                    members[address].isna() if address in members else pd.Series(True, index=members.index)
                ).to_numpy()
                todo = missing & verdict["outcome"].isin(["send", "quiet_hours"]).to_numpy()
                verdict.loc[todo, "outcome"] = NO_ADDRESS
                verdict.loc[todo, "reason"] = f"{NO_ADDRESS}: the customer has no {address}"
            tpl = compiled.get(v.template) if v.template else None
            offer = offers.get(v.offer) if v.offer else None
            window_end = spec.send_window.end if spec.send_window else None
            freezer = Freezer(
                tpl,
                channel=v.channel,
                segment=seg_ctx,
                offer=offer,
                window_end=window_end,
                topic=spec.topic,
                contact=CONTACT_COLUMNS[v.channel],
            )
            draft.variants.append(VariantDraft(v, tpl, offer, sub, verdict, freezer))
        drafts.append(draft)
    return CampaignDraft(spec, when, drafts)


# ---------------------------------------------------------------------------------------------
# rendering a sample of each variant
# ---------------------------------------------------------------------------------------------
def products_for(ctx: StoreContext, draft: VariantDraft, ids: list[str]) -> dict[str, list[str]]:
    """Recommended product ids per customer when the variant's template shows recommendations."""
    if draft.compiled is None or not draft.compiled.needs("recommendations") or not ids:
        return {}
    recs = recommendations_by_customer(ctx, ids, RECOMMENDATIONS, product_catalogue(ctx))
    return {cid: [p.product_id for p in products] for cid, products in recs.items()}


def check_sample(
    ctx: StoreContext, segment: SegmentDraft, draft: VariantDraft, size: int = SAMPLE_SIZE
) -> list[Any]:
    """Render ``size`` members of the variant (spread over its members) from their frozen fields,
    as the worker will; raises a :class:`TemplateError` naming segment and variant."""
    if draft.compiled is None or draft.freezer is None or draft.rows.num_rows == 0:
        return []
    n = draft.rows.num_rows
    picks = sorted({int(i) for i in np.linspace(0, n - 1, num=min(size, n))})
    rows = draft.rows.take(pa.array(picks)).to_pylist()
    products = products_for(ctx, draft, [r["customer_id"] for r in rows])
    secret = token_secret(ctx)
    out = []
    for row in rows:
        cid = row["customer_id"]
        fields = draft.freezer.fields(row, products=products.get(cid, ()), timezone=row.get("timezone"))
        try:
            out.append(
                draft.compiled.render(
                    context_from_fields(ctx, draft.compiled, cid, fields, secret=secret), cid
                )
            )
        except TemplateError as exc:
            raise TemplateError(
                f"segment {segment.name!r}, variant {draft.spec.name!r} does not render: {exc}"
            ) from None
    return out


# ---------------------------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResponseRate:
    """A response rate and where it comes from."""

    rate: float
    source: str


def response_rate(ctx: StoreContext, offer: dict[str, Any] | None) -> ResponseRate:
    """The conversion rate to expect from the offer (or no offer): past outcomes, else the prior."""
    name = offer["name"] if offer else None
    if ctx.warehouse.has_table(offers_mod.OUTCOMES_TABLE):
        t = ctx.table(offers_mod.OUTCOMES_TABLE)
        if name is not None:
            t = t.filter(t.offer == name)
        stats = t.aggregate(n=t.count(), rate=t.converted.cast("float64").mean()).to_pandas().iloc[0]
        if int(stats["n"]) >= offers_mod.MIN_OUTCOMES and not pd.isna(stats["rate"]):
            what = f"offer {name}" if name else "all offers"
            return ResponseRate(float(stats["rate"]), f"past outcomes of {what} (n={int(stats['n'])})")
    if offer is not None:
        rate = offers_mod.BASE_RATE.get(str(offer["kind"]), NO_OFFER_RATE)
        return ResponseRate(rate, f"prior for a {offer['kind']} offer ({rate:.1%}), too few past outcomes")
    return ResponseRate(NO_OFFER_RATE, f"prior without an offer ({NO_OFFER_RATE:.1%}), too few past outcomes")


def _mean(table: pa.Table, column: str, mask: np.ndarray) -> float | None:
    if column not in table.column_names or not mask.any():
        return None
    values = pd.to_numeric(table.column(column).to_pandas(), errors="coerce").to_numpy()[mask]
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def _message_cost(ctx: StoreContext, channel: str, sample: list[Any]) -> tuple[float, str]:
    costs = ctx.settings.campaigns
    if channel == "sms":
        price = ctx.settings.channels.sms.cost_per_segment
        segments = [count_segments(m.sms or "").segments for m in sample] or [1]
        mean = float(np.mean(segments))
        return price * mean, f"sms: {price:g} per segment × {mean:.2f} segments per message (rendered sample)"
    cost = float(getattr(costs, f"{channel}_cost"))
    return cost, f"{channel}: {cost:g} per message ([campaigns] {channel}_cost)"


def plan_campaign(
    ctx: StoreContext, spec: CampaignSpec, *, when: datetime | None = None, source: str = "<campaign>"
) -> CampaignPlan:
    """The plan of ``spec`` (see the module docstring); sends and writes nothing."""
    if not ctx.warehouse.has_table("customers"):
        raise DataError("no customers yet: ingest customers before planning a campaign")
    return plan_from_draft(ctx, draft_campaign(ctx, spec, when=when, source=source), source)


def plan_from_draft(ctx: StoreContext, draft: CampaignDraft, source: str = "<campaign>") -> CampaignPlan:
    """The plan of an existing draft (the run plans the draft it then writes).  Every variant is
    checked by rendering a sample of its members."""
    spec = draft.spec
    settings = ctx.settings
    margin_rate = settings.clv.margin
    currency = settings.ingest.currency or settings.currency
    assumptions: list[str] = []
    warnings: list[str] = []
    segments: list[SegmentPlan] = []
    for seg in draft.segments:
        control = int((seg.arms == CONTROL).sum())
        holdout = int((seg.arms == GLOBAL_HOLDOUT).sum())
        variants: list[VariantPlan] = []
        for v in seg.variants:
            outcome = v.verdict["outcome"].to_numpy()
            removed = {rule: int((outcome == rule).sum()) for rule in REMOVED}
            deferred = int((outcome == "quiet_hours").sum())
            reached = (outcome == "send") | (outcome == "quiet_hours")
            reach = int(reached.sum())
            sample = check_sample(ctx, seg, v)
            per_message, cost_note = _message_cost(ctx, v.spec.channel, sample)
            rate = response_rate(ctx, v.offer)
            aov = (
                _mean(v.rows, "avg_order_value", reached) or _mean(v.rows, "avg_order_value", ~reached) or 0.0
            )
            conversions = reach * rate.rate
            revenue = conversions * aov
            redemption = 0.0
            if v.offer is not None:
                redemption = float(offers_mod.get_offer(ctx, v.offer["name"]).cost)
                if v.offer["kind"] == "discount":
                    redemption += aov * float(v.offer["value"]) / 100
            cost = reach * per_message + conversions * redemption
            margin = revenue * margin_rate
            mde = minimum_detectable_lift(reach, control, min(max(rate.rate, 1e-6), 1 - 1e-6))
            variants.append(
                VariantPlan(
                    segment=seg.name,
                    variant=v.spec.name,
                    channel=v.spec.channel,
                    template=v.spec.template,
                    template_version=v.compiled.info.version if v.compiled else None,
                    offer=v.spec.offer,
                    members=len(outcome),
                    removed=removed,
                    deferred=deferred,
                    reach=reach,
                    cost=round(cost, 2),
                    cost_per_message=per_message,
                    response_rate=rate.rate,
                    expected_conversions=conversions,
                    expected_revenue=revenue,
                    expected_margin=margin,
                    roi=(margin - cost) / cost if cost > 0 else None,
                    mean_clv=_mean(v.rows, "clv", reached),
                    mde_absolute=None if math.isinf(mde.absolute) else mde.absolute,
                    mde_relative=None if math.isinf(mde.relative) else mde.relative,
                )
            )
            assumptions.append(
                f"{seg.name}/{v.spec.name}: response rate {rate.rate:.2%} from {rate.source}; "
                f"revenue per conversion {aov:.2f} {currency} (mean average order value of "
                f"the reached members); cost {cost_note}"
                + (f", offer redemption {redemption:.2f} per conversion" if v.offer else "")
            )
            limit = settings.campaigns.max_detectable_lift
            if mde.relative > limit:
                shown = (
                    "no lift" if math.isinf(mde.relative) else f"only a lift of {mde.relative:.0%} or more"
                )
                warnings.append(
                    f"segment {seg.name!r}, variant {v.spec.name!r}: too small to measure — with "
                    f"{reach} reached and {control} in control, {shown} is detectable "
                    f"(power 0.8, α 0.05; the bound is {limit:.0%})"
                )
        segments.append(
            SegmentPlan(
                segment=seg.name,
                members=len(seg.arms),
                control=control,
                global_holdout=holdout,
                in_earlier_segment=seg.in_earlier_segment,
                variants=variants,
            )
        )
    every = [v for s in segments for v in s.variants]
    cost = round(sum(v.cost for v in every), 2)
    margin = sum(v.expected_margin for v in every)
    assumptions.append(
        f"margin {margin_rate:.0%} of revenue ([clv] margin); ROI = (margin − cost) / cost; "
        "minimum detectable lift: two-sided z-test of reach against the segment's control, α 0.05, power 0.8"
    )
    if any(v.channel == "email" for v in every):
        warnings.extend(email_warnings(settings.channels.email))
    try:
        check_budget(spec, cost, source)
    except InvalidInputError as exc:  # shown in the plan; the run refuses
        warnings.append(str(exc))
    removed = {rule: sum(v.removed.get(rule, 0) for v in every) for rule in REMOVED}
    return CampaignPlan(
        name=spec.name,
        spec_sha256=spec.sha256,
        planned_for=draft.when,
        members=sum(s.members for s in segments),
        control=sum(s.control for s in segments),
        global_holdout=sum(s.global_holdout for s in segments),
        reach=sum(v.reach for v in every),
        removed=removed,
        deferred=sum(v.deferred for v in every),
        cost=cost,
        budget=spec.budget,
        expected_conversions=sum(v.expected_conversions for v in every),
        expected_revenue=sum(v.expected_revenue for v in every),
        expected_margin=margin,
        roi=(margin - cost) / cost if cost > 0 else None,
        segments=segments,
        assumptions=assumptions,
        warnings=warnings,
    )
