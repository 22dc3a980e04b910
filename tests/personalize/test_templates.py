"""Templates: storage, strict variables, escaping, modular blocks, the sandbox, and the fast path."""

from __future__ import annotations

import pytest

from micromarketing.errors import NotFoundError, TemplateError, TemplateSecurityError
from micromarketing.personalize.templates import (
    add_block,
    add_template,
    check_template,
    compile_template,
    install_examples,
    list_templates,
    preview_template,
    render_for_customers,
    token_secret,
)
from micromarketing.segments import Segments
from micromarketing.tokens import unsubscribe_url, verify_token


def test_preview_renders_every_part_for_a_real_customer(tiny_ws):
    add_template(
        tiny_ws,
        "hello",
        {
            "subject": "Hi {{ first_name }}\nBcc: evil@example.com",
            "html": "<p>Hello {{ first_name }} from {{ city }}</p>",
            "text": "Hello {{ first_name }} from {{ customer.city }}",
            "sms": "{{ first_name }}: STOP {{ unsubscribe_url }}",
        },
    )
    msg = preview_template(tiny_ws, "hello", "c1")
    assert msg.customer_id == "c1"
    assert msg.subject == "Hi Ada Bcc: evil@example.com"  # no line break survives: no header injection
    assert msg.html == "<p>Hello Ada from Lyon</p>"
    assert msg.text == "Hello Ada from Lyon"
    assert msg.sms.startswith("Ada: STOP http://127.0.0.1:8000/u/")  # [server] public_url's default


def test_customer_text_is_escaped_in_html_only(tiny_ws):
    add_template(tiny_ws, "hello", {"html": "<p>{{ first_name }}</p>", "text": "{{ first_name }}"})
    msg = preview_template(tiny_ws, "hello", "c2")
    assert msg.html == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert msg.text == "<script>alert(1)</script>"


def test_missing_field_fails_with_its_name_unless_defaulted(tiny_ws):
    add_template(tiny_ws, "strict", {"html": "<p>Hi</p>\n<p>{{ first_name }}</p>"})
    add_template(tiny_ws, "lenient", {"html": "<p>{{ first_name | default('there') }}</p>"})
    with pytest.raises(TemplateError) as err:
        preview_template(tiny_ws, "strict", "c3")  # c3 has no first name (NULL)
    assert "first_name" in str(err.value)
    assert err.value.part == "html" and err.value.line == 2 and err.value.customer_id == "c3"
    assert preview_template(tiny_ws, "lenient", "c3").html == "<p>there</p>"
    add_template(tiny_ws, "typo", {"text": "{{ frist_name }}"})
    with pytest.raises(TemplateError, match="frist_name"):
        preview_template(tiny_ws, "typo", "c1")


def test_check_reports_each_failing_member_without_stopping(tiny_ws):
    Segments(tiny_ws).save_discovered(
        "everyone", ["c1", "c2", "c3", "c4"], as_of=tiny_ws.table("profiles").as_of.max().execute()
    )
    add_template(tiny_ws, "strict", {"text": "Dear {{ first_name }}"})
    report = check_template(tiny_ws, "strict", "everyone")
    assert (report.recipients, report.rendered) == (4, 3)
    assert [f["customer_id"] for f in report.failures] == ["c3"]
    assert "first_name" in report.failures[0]["reason"] and not report.ok


def test_shared_blocks_are_reused_and_overridable(tiny_ws):
    add_template(tiny_ws, "a", {"html": '{% include "header.html" %}<p>A</p>{% include "footer.html" %}'})
    add_template(tiny_ws, "b", {"html": '{% include "header.html" %}<p>B</p>{% include "footer.html" %}'})
    a = preview_template(tiny_ws, "a", "c1", extra={"brand": "Maison <Lyon>"})
    assert "Maison &lt;Lyon&gt;" in a.html and "Unsubscribe" in a.html
    add_block(tiny_ws, "footer.html", "<footer>bye {{ first_name | default('') }}</footer>")
    for name in ("a", "b"):
        html = preview_template(tiny_ws, name, "c1").html
        assert html.endswith("<footer>bye Ada</footer>")
    kinds = {i.name: i.kind for i in list_templates(tiny_ws)}
    assert kinds == {"a": "message", "b": "message", "footer.html": "block"}


def test_broken_templates_are_refused_when_stored(tiny_ws, tmp_path):
    with pytest.raises(TemplateError, match=r"line 2: syntax error"):
        add_template(tiny_ws, "bad", {"html": "<p>ok</p>\n{% if x %}no end"})
    with pytest.raises(TemplateError, match="unknown block 'nope.html'"):
        add_template(tiny_ws, "bad", {"html": '{% include "nope.html" %}'})
    with pytest.raises(TemplateError, match="cannot tell which part"):
        add_template(tiny_ws, "bad", [tmp_path / "body.docx"])
    with pytest.raises(NotFoundError):
        preview_template(tiny_ws, "never-stored", "c1")
    (tmp_path / "winback.html").write_text("<p>{{ first_name }}</p>")
    (tmp_path / "winback.subject").write_text("Come back")
    info = add_template(tiny_ws, "winback", [tmp_path / "winback.html", tmp_path / "winback.subject"])
    assert (info.version, sorted(info.parts)) == (1, ["html", "subject"])
    assert add_template(tiny_ws, "winback", {"text": "v2"}).version == 2


SANDBOX_ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__['os'] }}",
    "{{ range.__init__.__globals__ }}",
    "{{ product_card.__globals__['os'].popen('id').read() }}",
    "{{ product_card.__self__.env }}",
    "{{ customer.__class__ }}",
    "{{ recommendations.__class__.__mro__ }}",
    "{{ '{0.__class__.__mro__}'.format(first_name) }}",
    "{{ '{0.__class__}'.format_map({'0': 1}) }}",
    "{{ first_name.__class__.__dict__ }}",
    "{{ dict.mro() }}",
    "{{ recommendations.append(1) }}",
    "{{ customer.update({'x': 1}) }}",
    "{{ customer.clear() }}",
    "{{ 'x' * 1000000 }}",
    "{{ 9 ** (9 ** 9) }}",
]


@pytest.mark.parametrize("i", range(len(SANDBOX_ESCAPES)))
def test_templates_cannot_reach_python_internals(tiny_shared, i):
    """Refused when stored (what is certain to break a limit) or when rendered, never run."""
    for part in ("html", "text"):
        name = f"evil{i}-{part}"
        with pytest.raises(TemplateError) as err:
            add_template(tiny_shared, name, {part: SANDBOX_ESCAPES[i]})
            preview_template(tiny_shared, name, "c1")
        assert "uid=" not in str(err.value)


def test_security_errors_are_typed(tiny_shared):
    add_template(tiny_shared, "evil-typed", {"text": "{{ ''.__class__ }}"})
    with pytest.raises(TemplateSecurityError, match="unsafe"):
        preview_template(tiny_shared, "evil-typed", "c1")


def test_unsubscribe_link_carries_a_verifiable_token(tiny_ws):
    add_template(tiny_ws, "u", {"text": "{{ unsubscribe_url }}"})
    url = preview_template(tiny_ws, "u", "c4").text
    base, _, token = url.rpartition("/u/")
    assert base == tiny_ws.settings.server.public_url
    assert "c4" not in token  # opaque: the id is not readable from the link
    assert verify_token(token_secret(tiny_ws), token) == "c4"
    assert verify_token(token_secret(tiny_ws), token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) is None


def test_fast_path_matches_plain_jinja_rendering(generated_ws):
    """Inlined includes and cached product cards give byte-identical output to Template.render."""
    ws = generated_ws
    install_examples(ws)
    tpl = compile_template(ws, "seasonal_picks")
    customers = ws.table("customers").order_by("customer_id").limit(100).to_pyarrow().to_pylist()
    ids = [r["customer_id"] for r in customers]
    rows = {r["customer_id"]: r for r in customers}
    messages = list(render_for_customers(ws, "seasonal_picks", ids, compiled=tpl, extra={"brand": "Maison"}))
    assert [m.customer_id for m in messages] == ids
    from micromarketing.personalize.templates import (
        offers_by_customer,
        product_catalogue,
        recommendations_by_customer,
    )

    recs = recommendations_by_customer(ws, ids[:20], 5, product_catalogue(ws))
    offers = offers_by_customer(ws, ids[:20])  # other tests may have stored offers in this workspace
    secret = token_secret(ws)
    for msg in messages[:20]:
        ctx = {k: v for k, v in rows[msg.customer_id].items() if v is not None}
        ctx.update(
            brand="Maison",
            recommendations=recs[msg.customer_id],
            unsubscribe_url=unsubscribe_url(ws.settings.server.public_url, secret, msg.customer_id),
        )
        if msg.customer_id in offers:
            ctx["offer"] = offers[msg.customer_id]
        for part in ("html", "text"):
            assert getattr(msg, part) == tpl.templates[part].render(**ctx)
        assert len(recs[msg.customer_id]) == 5
        for p in recs[msg.customer_id]:
            assert p.name in msg.text
    # one card per distinct product, however many recipients showed it
    shown = {p.product_id for r in recs.values() for p in r}
    assert shown <= {pid for pid, _ in tpl._cards}
    assert len(tpl._cards) <= 2 * 360


def test_segment_and_persona_fill_the_segment_variable(tiny_ws):
    as_of = tiny_ws.table("profiles").as_of.max().execute()
    persona = {
        "name": "Tea lovers",
        "tagline": "Small & frequent <baskets>",
        "description": "They drink tea.",
        "traits": [{"text": "buy tea twice as often"}],
    }
    Segments(tiny_ws).save_discovered(
        "tea", ["c1", "c2"], as_of=as_of, description="Tea lovers", details={"persona": persona}
    )
    add_template(
        tiny_ws,
        "seg",
        {
            "html": "{{ segment.name }}: {{ segment.persona.tagline }}",
            "text": "{{ segment.persona.traits | join(', ') }}",
        },
    )
    messages = list(render_for_customers(tiny_ws, "seg", "tea"))
    assert [m.customer_id for m in messages] == ["c1", "c2"]
    assert messages[0].html == "tea: Small &amp; frequent &lt;baskets&gt;"
    assert messages[0].text == "buy tea twice as often"
    # for a list of ids there is no segment unless one is named
    with pytest.raises(TemplateError, match="segment"):
        preview_template(tiny_ws, "seg", "c1")
    msg = preview_template(tiny_ws, "seg", "c1", segment="tea")
    assert msg.text == "buy tea twice as often"


def test_every_recipient_is_rendered_across_batches(tiny_ws):
    """Recommendations are queried between batches; no batch may be lost."""
    add_template(tiny_ws, "many", {"text": "{{ customer_id }}: {{ recommendations | length }}"})
    messages = list(render_for_customers(tiny_ws, "many", ["c4", "c3", "c2", "c1"], k=2, batch_size=1))
    assert [m.text for m in messages] == ["c1: 2", "c2: 2", "c3: 2", "c4: 2"]


def test_check_report_groups_failures_by_part_line_and_reason():
    from micromarketing.personalize.templates import CheckReport

    failures = [
        {"customer_id": c, "part": part, "line": 2, "reason": reason, "message": ""}
        for c, part, reason in [
            ("c1", "html", "missing field: first_name"),
            ("c2", "text", "missing field: city"),
            ("c3", "html", "missing field: first_name"),
        ]
    ]
    report = CheckReport("t", "s", recipients=5, rendered=2, failures=failures)
    assert report.failure_groups() == [
        {"reason": "html line 2: missing field: first_name", "count": 2, "example": "c1"},
        {"reason": "text line 2: missing field: city", "count": 1, "example": "c2"},
    ]
