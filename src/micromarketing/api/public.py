"""The customer's own pages, reached from the links in their messages (no API key).

``/u/{token}``: the unsubscribe page (GET) and RFC 8058 one-click unsubscribe (POST with
``List-Unsubscribe=One-Click``, urlencoded or multipart; no cookies, no redirect: the answer is
the confirmation itself).  ``/preferences/{token}``: channels, topics (``[preferences.topics]``),
a pause, resubscribe, a download of their data and an erasure request.  The token is the opaque
HMAC token of the links; any token that does not verify answers 404 with nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import StringConstraints

from micromarketing.api.auth import client_limit
from micromarketing.api.deps import WS
from micromarketing.api.routers import plain

router = APIRouter(tags=["public"], dependencies=[Depends(client_limit)])
pages = Jinja2Templates(directory=Path(__file__).with_name("templates"))
Token = Annotated[str, "the opaque token from the message's link"]
Channel = Literal["email", "sms", "push", "post", "ads", "phone"]
CHANNELS: tuple[Channel, ...] = ("email", "sms", "push", "post", "ads", "phone")
TopicName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MAX_TOPICS = 100
HTML = {200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "the page"}}


def _page(request: Request, name: str, **context: object) -> HTMLResponse:
    response = pages.TemplateResponse(request, name, context)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    return response


@router.get("/u/{token}", response_class=HTMLResponse, responses=HTML, summary="Unsubscribe page")
def unsubscribe_page(ws: WS, request: Request, token: Token) -> HTMLResponse:
    prefs = ws.preferences.preferences(token)
    return _page(request, "unsubscribe.html", token=token, preferences=prefs)


@router.post("/u/{token}", response_class=HTMLResponse, responses=HTML, summary="One-click unsubscribe")
def unsubscribe(
    ws: WS,
    request: Request,
    token: Token,
    one_click: Annotated[Literal["One-Click"], Form(alias="List-Unsubscribe")],
) -> HTMLResponse:
    change = ws.preferences.unsubscribe(token)
    return _page(request, "done.html", token=token, message="You are unsubscribed from our emails.",
                 change=change)


@router.get("/preferences/{token}", response_class=HTMLResponse, responses=HTML,
            summary="Preference centre")
def preference_centre(ws: WS, request: Request, token: Token) -> HTMLResponse:
    prefs = ws.preferences.preferences(token)
    return _page(request, "preferences.html", token=token, preferences=prefs, channels=CHANNELS,
                 topics=ws.preferences.topics)


@router.post("/preferences/{token}", response_class=HTMLResponse, responses=HTML,
             summary="Change preferences")
def change_preferences(
    ws: WS,
    request: Request,
    token: Token,
    action: Annotated[Literal["save", "pause", "resubscribe", "erase"], Form()],
    channel: Annotated[list[Channel] | None, Form(max_length=len(CHANNELS))] = None,
    topic: Annotated[list[TopicName] | None, Form(max_length=MAX_TOPICS)] = None,
    days: Annotated[int, Form(ge=1, le=366)] = 30,
) -> HTMLResponse:
    """``save``: opted in to exactly the ticked channels and topics; ``pause``: nothing for
    ``days`` days (a consent record that ends; saving choices ends it too); ``resubscribe``: undo
    an unsubscribe or pause; ``erase``: ask to be forgotten."""
    if action == "save":
        chosen = set(channel or ())
        change = ws.preferences.set_choices(
            token, {c: "opt_in" if c in chosen else "opt_out" for c in CHANNELS}, set(topic or ())
        )
        message = "Your choices are saved."
    elif action == "pause":
        change = ws.preferences.pause(token, days)
        until = change.preferences.paused_until
        message = (f"We will not contact you until {until}." if until
                   else "There is nothing to pause: you receive no marketing messages from us.")
    elif action == "resubscribe":
        change = ws.preferences.resubscribe(token)
        emails = any(r.channel == "email" and r.status == "opt_in" for r in change.recorded)
        message = ("Welcome back: you are subscribed to our emails again." if emails
                   else "Welcome back: your pause is over.")
    else:
        change = ws.preferences.request_erasure(token)
        message = "Your erasure request is recorded; we will not contact you again."
    return _page(request, "done.html", token=token, message=message, change=change)


@router.get(
    "/preferences/{token}/export",
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}},
                     "description": "everything held about the customer"}},
    response_class=Response,
    summary="Download my data",
)
def export(ws: WS, token: Token) -> Response:
    body = json.dumps(plain(ws.preferences.export(token)), default=str, indent=2)
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="my-data.json"', "Cache-Control": "no-store"},
    )

