"""The dashboard's pages: overview, segments, customers, campaigns and privacy, behind a login.

Every page calls the same facade methods as the CLI and the REST API (``ws.reports.*``,
``ws.segments.*``, ``ws.segment_of_one``, ``ws.recommender``, ``ws.offers``, ``ws.campaigns.*``,
``ws.privacy.*``); nothing here computes a figure.  Slow parts (charts, the live rule preview,
recommendations, a campaign's measurement) arrive as htmx fragments, so a page shows at once and
fills in.  :class:`PageRoute` turns a missing session into a redirect to the login form, a
refusal into a 403 page and a user's error into a page naming it.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import plotly
from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from micromarketing.errors import InvalidInputError, MicromarketingError, RuleError
from micromarketing.web import charts, session
from micromarketing.web.session import Forbidden, LoginRequired, WebUser
from micromarketing.workspace import Workspace

HERE = Path(__file__).parent
STATIC = {
    "htmx.min.js": HERE / "static" / "htmx.min.js",
    "app.css": HERE / "static" / "app.css",
    "charts.js": HERE / "static" / "charts.js",
    "plotly.min.js": Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
}
pages = Jinja2Templates(directory=HERE / "templates")
OVERVIEW_TTL = 60.0  # seconds the overview's aggregates are reused while the segments are unchanged
SAMPLE = 8


class PageRoute(APIRoute):
    """A page route: login redirects, 403 pages and error pages instead of problem JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                if request.headers.get("hx-request"):
                    return Response(status_code=401, headers={"HX-Redirect": "/login"})
                target = request.url.path if request.method == "GET" else "/"
                return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            except Forbidden as exc:
                return _error(request, 403, "Not allowed", exc.detail)
            except MicromarketingError as exc:
                return _error(request, exc.http_status, "That did not work", str(exc))

        return page_handler


router = APIRouter(route_class=PageRoute)


def _workspace(request: Request) -> Iterator[Workspace]:
    with request.app.state.holder.use() as ws:
        request.state.workspace = ws  # the session check reuses it (the holder's lock is not reentrant)
        try:
            yield ws
        finally:
            request.state.workspace = None


WS = Annotated[Workspace, Depends(_workspace)]


def _error(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    fragment = bool(request.headers.get("hx-request"))
    return pages.TemplateResponse(
        request, "_error.html" if fragment else "error.html",
        {"title": title, "detail": detail, "user": None}, status_code=status,
    )


def _page(request: Request, template: str, user: WebUser | None, **context: Any) -> HTMLResponse:
    response = pages.TemplateResponse(
        request, template, {"user": user, "path": request.url.path, **context}
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _user(request: Request) -> WebUser:
    return session.current(request)


User = Annotated[WebUser, Depends(_user)]


async def _posted_by(request: Request, user: WebUser, role: str) -> None:
    """A POST is allowed only with the session's CSRF token and a role of ``role`` or above."""
    await session.check_csrf(request, user)
    session.require(user, role)


# -- static files and login ----------------------------------------------------------------------
@router.get("/static/{name}")
def static(name: str) -> Response:
    path = STATIC.get(name)
    if path is None:
        return Response(status_code=404)
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/", failed: bool = False) -> HTMLResponse:
    token = session.login_token(request)
    response = _page(request, "login.html", None, next=_safe_next(next), failed=failed, login_token=token)
    session.remember_login_token(request, response, token)
    return response


@router.post("/login")
def login(
    ws: WS,
    request: Request,
    api_key: Annotated[str, Form(max_length=200)],
    login_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    if not session.login_token_ok(request, login_token):
        raise Forbidden("the login form expired: reload the page and try again")
    response = RedirectResponse(_safe_next(next), status_code=303)
    user = session.start(ws, api_key, request, response)
    if user is None:
        return RedirectResponse(f"/login?failed=1&next={quote(_safe_next(next))}", status_code=303)
    ws.audit("web.login", "session", {}, actor=user.actor)
    return response


@router.post("/logout")
async def logout(ws: WS, request: Request, user: User) -> Response:
    await session.check_csrf(request, user)
    response = RedirectResponse("/login", status_code=303)
    session.end(response)
    return response


def _safe_next(target: str) -> str:
    """Only paths of this site (no ``//host``), so the login cannot redirect elsewhere."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


# -- overview ------------------------------------------------------------------------------------
_overview_cache: dict[str, Any] = {}


def _overview_inputs(ws: Workspace) -> Any:
    """``ws.reports.inputs()``, reused for :data:`OVERVIEW_TTL` while no segment changed."""
    key = tuple((s.name, s.version, s.size, s.as_of) for s in ws.segments.list())
    hit = _overview_cache.get(str(ws.root))
    if hit and hit[0] == key and time.monotonic() - hit[1] < OVERVIEW_TTL:
        return hit[2]
    inputs = ws.reports.inputs()
    _overview_cache[str(ws.root)] = (key, time.monotonic(), inputs)
    return inputs


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, user: User) -> HTMLResponse:
    return _page(request, "overview.html", user)


@router.get("/fragments/overview", response_class=HTMLResponse)
def overview_body(ws: WS, request: Request, user: User) -> HTMLResponse:
    inputs = _overview_inputs(ws)
    personas = [] if inputs.personas is None else inputs.personas.to_dict(orient="records")
    return _page(request, "_overview.html", user, inputs=inputs, charts=charts.overview(inputs),
                 personas=personas)


# -- segments ------------------------------------------------------------------------------------
@router.get("/segments", response_class=HTMLResponse)
def segments(ws: WS, request: Request, user: User) -> HTMLResponse:
    infos = [s for s in ws.segments.list() if not s.details.get("retired")]
    overlap = ws.segments.overlap()
    return _page(request, "segments.html", user, segments=infos, overlap=overlap)


@router.get("/segments/preview", response_class=HTMLResponse)
def rule_preview(
    ws: WS, request: Request, user: User, rule: Annotated[str, Query(max_length=10_000)] = ""
) -> HTMLResponse:
    if not rule.strip():
        return _page(request, "_preview.html", user, preview=None, error=None)
    try:
        preview = ws.segments.preview(rule=rule, sample=SAMPLE)
    except RuleError as exc:
        return _page(request, "_preview.html", user, preview=None, error=_rule_error(rule, exc))
    return _page(request, "_preview.html", user, preview=preview, error=None)


def _rule_error(rule: str, exc: RuleError) -> dict[str, Any]:
    """The rule's faulty line with a caret under the column the parser names."""
    lines = rule.splitlines() or [""]
    line = min(max(exc.line, 1), len(lines))
    return {"line": exc.line, "column": exc.column, "reason": exc.reason, "text": lines[line - 1],
            "caret": " " * max(exc.column - 1, 0) + "^"}


@router.post("/segments")
async def create_segment(
    ws: WS,
    request: Request,
    user: User,
    name: Annotated[str, Form(max_length=64)],
    rule: Annotated[str, Form(max_length=10_000)],
    description: Annotated[str, Form(max_length=2_000)] = "",
) -> Response:
    await _posted_by(request, user, "marketer")
    ws.segments.create(name.strip(), rule, description=description.strip(), actor=user.actor)
    return RedirectResponse(f"/segments/{quote(name.strip())}", status_code=303)


@router.get("/segments/{name}", response_class=HTMLResponse)
def segment(ws: WS, request: Request, user: User, name: str) -> HTMLResponse:
    info = ws.segments.get(name)
    return _page(request, "segment.html", user, info=info, persona=info.details.get("persona"))


@router.get("/segments/{name}/fairness", response_class=HTMLResponse)
def segment_fairness(ws: WS, request: Request, user: User, name: str) -> HTMLResponse:
    return _page(request, "_fairness.html", user, fairness=ws.segments.fairness(name))


@router.get("/segments/{name}/traits", response_class=HTMLResponse)
def segment_traits(ws: WS, request: Request, user: User, name: str) -> HTMLResponse:
    preview = ws.segments.preview(name, sample=SAMPLE)
    return _page(request, "_preview.html", user, preview=preview, error=None)


@router.get("/segments/{name}/members.csv")
def segment_members(ws: WS, user: User, name: str) -> StreamingResponse:
    ids, total = ws.segments.members(name, limit=1_000_000)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["customer_id"])
    writer.writerows([i] for i in ids)
    return StreamingResponse(
        iter([buffer.getvalue()]), media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}-members.csv"',
                 "X-Total-Count": str(total)},
    )


# -- customers -----------------------------------------------------------------------------------
@router.get("/customers", response_class=HTMLResponse)
def find_customer(request: Request, user: User, id: str = "") -> Response:
    if id.strip():
        return RedirectResponse(f"/customers/{quote(id.strip(), safe='')}", status_code=303)
    return _page(request, "customers.html", user)


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
def customer(ws: WS, request: Request, user: User, customer_id: str) -> HTMLResponse:
    view = ws.segment_of_one(customer_id)
    messages = ws.delivery.ledger(customer_id).messages
    return _page(request, "customer.html", user, view=view, profile=view.profile or {}, messages=messages)


@router.get("/customers/{customer_id}/suggestions", response_class=HTMLResponse)
def customer_suggestions(ws: WS, request: Request, user: User, customer_id: str) -> HTMLResponse:
    notes: list[str] = []
    items: list[dict[str, Any]] = []
    offer: dict[str, Any] | None = None
    try:
        items = _known(ws.recommender.recommend([customer_id], k=5).to_dict(orient="records"))
    except MicromarketingError as exc:
        notes.append(f"Recommendations: {exc}")
    try:
        offer = _known(ws.offers.next_best([customer_id]).to_dict(orient="records"))[0]
    except MicromarketingError as exc:
        notes.append(f"Next best offer: {exc}")
    return _page(request, "_suggestions.html", user, items=items, offer=offer, notes=notes)


def _known(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a frame with its NaNs as None, so the page says "–" rather than "nan"."""
    return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows]


# -- campaigns ------------------------------------------------------------------------------------
CAMPAIGN_FORM = "the campaign form"


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns(ws: WS, request: Request, user: User) -> HTMLResponse:
    choices = None
    if user.can("marketer"):
        choices = {
            "segments": [s.name for s in ws.segments.list() if not s.details.get("retired")],
            "templates": [t.name for t in ws.templates.list() if t.kind == "message"],
            "offers": [o.name for o in ws.offers.list()],
            "channels": ws.campaigns.channels,
        }
    return _page(request, "campaigns.html", user, campaigns=ws.campaigns.list(), choices=choices)


def _percent(form: Any, field: str, default: str) -> float:
    text = str(form.get(field) or default).strip().rstrip("%")
    try:
        return float(text) / 100
    except ValueError:
        raise InvalidInputError(f"{CAMPAIGN_FORM}: {field.replace('_', ' ')}: expected a percentage,"
                                f" got {text[:20]!r}") from None


def _campaign_fields(form: Any) -> dict[str, Any]:
    """The plan form's fields as a campaign mapping (one segment; variant a, and b when it has a
    template), for ``ws.campaigns.parse`` to validate like a campaign file."""
    def text(field: str) -> str:
        return str(form.get(field) or "").strip()[:200]

    channel = text("channel") or "email"
    variants = []
    for arm in ("a", "b"):
        template, offer = text(f"template_{arm}"), text(f"offer_{arm}")
        if arm == "a" or template:
            variants.append({"name": arm, "template": template or None, "channel": channel,
                             **({"offer": offer} if offer else {})})
    for variant in variants:
        variant["share"] = 1 / len(variants)
    fields: dict[str, Any] = {
        "name": text("name"),
        "attribution_days": text("attribution_days") or 7,
        "control_share": _percent(form, "control_percent", "10"),
        "segments": [{"segment": text("segment"), "variants": variants}],
    }
    if text("budget"):
        fields["budget"] = text("budget")
    return fields


@router.post("/campaigns/plan", response_class=HTMLResponse)
async def plan_campaign(ws: WS, request: Request, user: User) -> HTMLResponse:
    await _posted_by(request, user, "marketer")
    try:
        spec = ws.campaigns.parse(_campaign_fields(await request.form()), CAMPAIGN_FORM)
        plan = ws.campaigns.plan(spec)
    except MicromarketingError as exc:  # shown in place of the plan, as the rule preview does
        return _page(request, "_error.html", user, detail=str(exc))
    return _page(request, "_plan.html", user, plan=plan, removed=REMOVED_LABELS)


#: How the plan names what the contact policy removes (keys of ``CampaignPlan.removed``).
REMOVED_LABELS = {"no_consent": "No consent", "suppressed": "Suppressed", "frequency_cap": "Frequency cap",
                  "no_address": "No address"}


@router.post("/campaigns/run")
async def run_campaign(ws: WS, request: Request, user: User) -> Response:
    await _posted_by(request, user, "marketer")
    form = await request.form()
    spec = ws.campaigns.parse(_campaign_fields(form), CAMPAIGN_FORM)
    if form.get("planned") != spec.sha256:
        raise InvalidInputError("The form changed after it was planned: plan it again before launching.")
    result = ws.campaigns.run(spec, actor=user.actor)
    return RedirectResponse(f"/campaigns/{quote(result.name)}", status_code=303)


@router.get("/campaigns/{name}", response_class=HTMLResponse)
def campaign(ws: WS, request: Request, user: User, name: str) -> HTMLResponse:
    status = ws.campaigns.status(name)
    return _page(request, "campaign.html", user, name=name, status=status, in_flight=status.in_flight)


@router.get("/campaigns/{name}/delivery", response_class=HTMLResponse)
def campaign_delivery(ws: WS, request: Request, user: User, name: str) -> HTMLResponse:
    """The delivery card, polled while messages are out; the poll that finds none left tells the
    page (``delivery-done``) so that the results are measured again."""
    status = ws.campaigns.status(name)
    in_flight = status.in_flight
    response = _page(request, "_delivery.html", user, name=name, status=status, in_flight=in_flight)
    if not in_flight:
        response.headers["HX-Trigger"] = "delivery-done"
    return response


@router.get("/campaigns/{name}/results", response_class=HTMLResponse)
def campaign_results(ws: WS, request: Request, user: User, name: str) -> HTMLResponse:
    results = ws.reports.campaign(name)
    return _page(request, "_results.html", user, results=results, charts=charts.campaign(results))


# -- privacy (administrators) ----------------------------------------------------------------------
AUDIT_SHOWN = 100


def _privacy_page(ws: Workspace, request: Request, user: WebUser, done: str | None = None) -> HTMLResponse:
    audit = list(reversed(ws.privacy.audit_log(limit=AUDIT_SHOWN)))  # newest first
    return _page(request, "privacy.html", user, audit=audit, done=done)


@router.get("/privacy", response_class=HTMLResponse)
def privacy(ws: WS, request: Request, user: User) -> HTMLResponse:
    session.require(user, "admin")
    return _privacy_page(ws, request, user)


@router.post("/privacy/export")
async def privacy_export(
    ws: WS, request: Request, user: User, customer_id: Annotated[str, Form(max_length=128)]
) -> Response:
    await _posted_by(request, user, "admin")
    data = ws.privacy.export(customer_id.strip(), actor=user.actor)
    return Response(data.model_dump_json(indent=2), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{quote(data.customer_id)}.json"'})


@router.post("/privacy/forget", response_class=HTMLResponse)
async def privacy_forget(
    ws: WS, request: Request, user: User, customer_id: Annotated[str, Form(max_length=128)],
    confirm: Annotated[str, Form(max_length=128)] = "",
) -> HTMLResponse:
    await _posted_by(request, user, "admin")
    if confirm.strip() != customer_id.strip():
        raise InvalidInputError("Type the customer id a second time, exactly, to confirm the erasure.")
    report = ws.privacy.forget(customer_id.strip(), actor=user.actor)
    rows = sum(report.warehouse_rows.values()) + sum(report.ops_rows.values())
    done = (f"{customer_id.strip()} was already erased." if report.already_erased else
            f"{customer_id.strip()} was erased: {rows:,} rows removed, kept only as {report.subject}.")
    return _privacy_page(ws, request, user, done=done)
