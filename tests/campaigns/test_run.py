"""The run: assignments for every member, one outbox row per treated member with the policy's
state and reason, idempotent re-runs, frozen ingredients that render byte for byte like the
direct render, proofs, status and list."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import ibis
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from micromarketing.campaigns.assign import CONTROL
from micromarketing.campaigns.ingredients import (
    decode_value,
    encode_value,
    freeze,
    render_frozen,
)
from micromarketing.campaigns.policy import QuietHours, quiet_until, zone
from micromarketing.campaigns.run import run_campaign
from micromarketing.campaigns.spec import parse_spec
from micromarketing.channels.base import message_key
from micromarketing.cli.main import app
from micromarketing.errors import ConflictError, InvalidInputError, TemplateError
from micromarketing.personalize.templates import (
    compile_template,
    product_catalogue,
    recipients_table,
    render_rows,
    segment_context,
)
from micromarketing.store.models import Assignment, Campaign, OutboxMessage

NOW = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)  # 07:00 in New York and 21:00 in Tokyo: quiet there


def _text(name: str, template: str = "winback", extra: str = "") -> str:
    return (
        f"name: {name}\ncontrol_share: 0.2\n{extra}segments:\n  - segment: lyon\n    variants:\n"
        f"      - {{name: a, template: {template}, offer: spring10, channel: email, share: 0.5}}\n"
        f"      - {{name: b, template: {template}, channel: email, share: 0.5}}\n"
    )


def _run(ws, name: str, template: str = "winback", extra: str = "", now: datetime = NOW):
    return run_campaign(
        ws.context, parse_spec(_text(name, template, extra), f"{name}.yaml"), now=now, source=f"{name}.yaml"
    )


def _rows(ws, model, campaign_id):
    with ws.ops.session() as s:
        return list(s.scalars(select(model).where(model.campaign_id == campaign_id)))


def test_run_writes_assignments_and_outbox_rows(shop):
    result = _run(shop, "r1")
    assignments = _rows(shop, Assignment, result.campaign_id)
    outbox = _rows(shop, OutboxMessage, result.campaign_id)
    assert len(assignments) == result.members == 300
    arms = {a.customer_id: a.arm for a in assignments}
    assert sum(arm == CONTROL for arm in arms.values()) == result.control
    treated = {c for c, arm in arms.items() if arm != CONTROL}
    assert {m.customer_id for m in outbox} == treated  # control members get no message
    assert len(outbox) == result.messages_inserted == result.pending + result.skipped
    for m in outbox:
        assert m.idempotency_key == message_key("r1", m.customer_id, "email") == m.message_id
        assert m.variant == arms[m.customer_id] and m.template_name == "winback" and m.template_version == 1
        assert m.offer_code == ("spring10" if m.variant == "a" else None)
        n = int(m.customer_id[1:])
        if n % 10 in (4, 7):
            assert m.state == "skipped" and m.reason.startswith("no_consent:")
        else:
            assert m.state == "pending"
            tz = zone(m.fields.get("_tz"))
            until = quiet_until(
                NOW, tz, QuietHours(*map(lambda t: datetime.strptime(t, "%H:%M").time(), ("21:00", "08:00")))
            )
            not_before = m.not_before.replace(tzinfo=UTC)
            if until is None:
                assert not_before == NOW and m.reason == ""
            else:
                assert not_before == until and m.reason.startswith("quiet_hours:")
        assert "html" not in m.fields and "subject" not in m.fields  # ingredients, not the body
    assert result.skipped_by_rule == {"no_consent": result.skipped}
    with shop.ops.session() as s:
        campaign = s.get(Campaign, result.campaign_id)
        assert (
            campaign.status == "running" and campaign.spec["name"] == "r1" and len(campaign.spec_sha256) == 64
        )


def test_rerun_inserts_nothing_and_a_changed_file_is_refused(shop):
    first = _run(shop, "r2")
    again = _run(shop, "r2")
    assert again.already_run and again.assignments_inserted == 0 and again.messages_inserted == 0
    assert "already run: nothing inserted" in again.message
    assert len(_rows(shop, OutboxMessage, first.campaign_id)) == first.messages_inserted
    with pytest.raises(ConflictError, match=r"r2.yaml: campaign 'r2' was already run from a different file"):
        _run(shop, "r2", extra="priority: 3\n")


def test_render_errors_and_ended_windows_write_nothing(shop):
    if "strict" not in {t.name for t in shop.templates.list()}:
        shop.templates.add("strict", {"subject": "Hi", "text": "Dear {{ last_name }}"})
    with pytest.raises(TemplateError, match="variant 'a' does not render"):
        _run(shop, "r3", template="strict")
    window = "send_window: {start: 2029-01-01T00:00:00Z, end: 2029-01-02T00:00:00Z}\n"
    with pytest.raises(InvalidInputError, match="send_window.end: the window ended"):
        _run(shop, "r4", extra=window)
    with pytest.raises(InvalidInputError, match="budget: 1 is below the plan's cost"):
        _run(shop, "r5", extra="budget: 1\n")
    with shop.ops.session() as s:
        assert not set(s.scalars(select(Campaign.name))) & {"r3", "r4", "r5"}


def test_values_round_trip_with_their_types():
    values = {
        "d": datetime(2024, 1, 2, 3, 4, tzinfo=UTC).date(),
        "t": datetime(2024, 1, 2, 3, 4, tzinfo=UTC),
        "n": [1, 2.5, None, "x"],
        "nested": {"when": datetime(2020, 5, 5, tzinfo=UTC)},
    }
    encoded = encode_value(values)
    assert json.loads(json.dumps(encoded)) == encoded
    assert decode_value(json.loads(json.dumps(encoded))) == values


def _direct(ws, template: str, ids: list[str], products: dict[str, list[str]]):
    """The messages ``render_rows`` (the template module's own render path) makes for ``ids``."""
    tpl = compile_template(ws.context, template)
    catalogue = product_catalogue(ws.context)
    table = recipients_table(ws.context, ibis.memtable({"customer_id": ids}))
    return {
        m.customer_id: m
        for m in render_rows(
            ws.context,
            tpl,
            table,
            segment=segment_context(ws.context, "lyon"),
            recommender=lambda batch: {c: [catalogue[p] for p in products.get(c, [])] for c in batch},
        )
    }


@pytest.mark.parametrize(("template", "variant"), [("winback", "a"), ("picks", "a"), ("picks", "b")])
def test_frozen_rows_render_byte_for_byte_like_the_direct_render(shop, template, variant):
    name = f"r_{template}"
    if name not in {c.name for c in shop.campaigns.list()}:
        _run(shop, name, template=template)
    campaign_id = next(c for c in shop.campaigns.list() if c.name == name)
    with shop.ops.session() as s:
        cid = s.scalar(select(Campaign.id).where(Campaign.name == campaign_id.name))
        rows = list(
            s.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.campaign_id == cid, OutboxMessage.variant == variant
                )
            )
        )
    products = {m.customer_id: m.fields.get("_products", []) for m in rows}
    if template == "picks":
        assert any(products.values())
    direct = _direct(shop, template, [m.customer_id for m in rows], products)
    compiled = compile_template(shop.context, template)
    for m in rows:
        frozen = render_frozen(shop.context, compiled, m)
        assert frozen == direct[m.customer_id], m.customer_id
        assert (
            render_frozen(shop.context, compile_template(shop.context, template), m) == frozen
        )  # every call


def test_freeze_keeps_only_what_the_template_reads(shop):
    tpl = compile_template(shop.context, "winback")
    row = {
        "customer_id": "c1",
        "first_name": "Ada",
        "city": "Lyon",
        "email": "a@x",
        "phone": "+1",
        "lat": 1.0,
    }
    fields = freeze(row, tpl, channel="email", segment={"name": "lyon"}, timezone="Europe/Paris")
    assert set(fields) == {"first_name", "city", "email", "_segment", "_tz"}
    everything = freeze(row, compile_template(shop.context, "picks"), channel="sms", segment={"name": "s"})
    assert {"first_name", "city", "lat", "phone"} <= set(everything)  # reads `customer`: all of it


def test_proofs_status_and_list_through_the_cli(shop, tmp_path):
    path = tmp_path / "r_cli.yaml"
    path.write_text(_text("r_cli"))
    runner = CliRunner()
    w = ["-w", str(shop.root)]
    ran = runner.invoke(app, ["campaign", "run", str(path), "--no-deliver", "--json", *w])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["messages_inserted"] > 0
    again = runner.invoke(app, ["campaign", "run", str(path), "--no-deliver", *w])
    assert again.exit_code == 0 and "already run: nothing inserted" in again.stdout
    proof = runner.invoke(
        app,
        ["campaign", "test", str(path), "--to", "me@example.com", "--to", "you@example.com", "--json", *w],
    )
    assert proof.exit_code == 0, proof.output
    assert json.loads(proof.stdout)["messages"] == 4  # two variants × two addresses
    with shop.ops.session() as s:
        tests = list(s.scalars(select(OutboxMessage).where(OutboxMessage.is_test.is_(True))))
    assert {m.customer_id for m in tests} >= {"test:me@example.com", "test:you@example.com"}
    assert all(
        m.fields["email"] in ("me@example.com", "you@example.com") and m.campaign_id is None for m in tests
    )
    status = runner.invoke(app, ["campaign", "status", "r_cli", "--json", *w])
    counts = json.loads(status.stdout)
    for key in ("pending", "sending", "sent", "deferred", "failed", "skipped", "control"):
        assert isinstance(counts[key], int)
    assert (
        counts["pending"] + counts["skipped"] == json.loads(ran.stdout)["messages_inserted"]
    )  # proofs excluded
    listed = json.loads(runner.invoke(app, ["campaign", "list", "--json", *w]).stdout)
    assert {"name": "r_cli", "status": "running"}.items() <= next(
        c for c in listed if c["name"] == "r_cli"
    ).items()
    missing = runner.invoke(app, ["campaign", "status", "nope", *w])
    assert missing.exit_code == 2 and "no campaign named 'nope'" in missing.output


def test_quiet_hours_rows_are_deferred_to_the_local_morning(fresh_shop):
    """(A fresh shop: in the module's shop the earlier campaigns' messages use up the caps.)"""
    result = _run(fresh_shop, "r_quiet", now=NOW)
    rows = [m for m in _rows(fresh_shop, OutboxMessage, result.campaign_id) if m.state == "pending"]
    tokyo = [m for m in rows if m.fields.get("_tz") == "Asia/Tokyo"]
    assert tokyo and all(m.not_before.replace(tzinfo=UTC) == NOW + timedelta(hours=11) for m in tokyo)
    assert result.deferred == sum(m.not_before.replace(tzinfo=UTC) > NOW for m in rows)
