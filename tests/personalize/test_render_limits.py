# ruff: noqa: E501
"""Every render runs under the ``[render]`` budget (#12 item 1): operations, time, output size.

Each class of runaway template is refused with a TemplateLimitError naming the template, the part
and the setting — statically at ``template add`` when the constant expression already breaks a
limit, else while rendering, before the memory is allocated.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micromarketing.config import RenderSettings, load_settings
from micromarketing.errors import ConfigError, TemplateError, TemplateLimitError
from micromarketing.personalize.templates import CompiledTemplate, TemplateInfo, add_template

SMALL = RenderSettings(max_operations=20_000, max_seconds=1.0, max_output_chars=20_000)


def compiled(source: str, part: str = "text", limits: RenderSettings = SMALL) -> CompiledTemplate:
    return CompiledTemplate(TemplateInfo(name="t", version=1, kind="message", parts={part: source}), {}, limits)


def render(source: str, limits: RenderSettings = SMALL, **context: object) -> str:
    return compiled(source, limits=limits).render(dict(context), "c1").text or ""


def refused(source: str, setting: str, limits: RenderSettings = SMALL, **context: object) -> TemplateLimitError:
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(TemplateLimitError) as err:
            render(source, limits, **context)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - start < limits.max_seconds * 3 + 1
    assert peak < 50 * limits.max_output_chars + 5_000_000  # refused before the value was built
    message = str(err.value)
    assert "template t/text" in message and f"[render] {setting}" in message, message
    return err.value


def test_nested_loops_stop_at_the_operation_budget():
    refused("{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}", "max_operations")


def test_time_budget_holds_when_operations_are_plentiful():
    slow = RenderSettings(max_operations=10**9, max_seconds=0.3, max_output_chars=10**8)
    err = refused(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "max_seconds", slow
    )
    assert "0.3 s" in str(err)


def test_pad_widths_from_data_are_refused_before_allocating():
    for source in (
        "{{ 'x'|center(width) }}",
        "{{ 'x'|indent(width, true) }}",
        "{{ 'x'.ljust(width) }}",
        "{{ '{:>%d}' % width }}{{ ('{:>' ~ width ~ '}').format('x') }}",
        "{{ '%0*d' % (width, 1) }}",
        "{{ ('%0' ~ width ~ 'd')|format(1) }}",
    ):
        refused(source, "max_output_chars", width=10**9)


def test_repetition_and_growth_are_refused():
    refused("{{ 'ab' * n }}", "max_output_chars", n=10**8)
    refused("{{ [1, 2] * n }}", "max_output_chars", n=10**8)
    doubling = "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
    refused(doubling + "{{ ns.s|length }}", "max_output_chars")
    refused(doubling.replace("ns.s ~ ns.s", "ns.s + ns.s") + "{{ ns.s|length }}", "max_output_chars")


def test_chained_powers_are_bounded():
    refused("{% set a = n ** 64 %}{% set b = a ** 64 %}{{ b ** 64 }}", "max_output_chars", n=9)
    refused("{% set ns = namespace(a=n) %}{% for i in range(20) %}{% set ns.a = ns.a * ns.a %}{% endfor %}{{ ns.a }}", "max_output_chars", n=10**9)


def test_output_size_is_checked_while_streaming():
    wide = RenderSettings(max_operations=10**7, max_seconds=5, max_output_chars=20_000)
    refused("{% for i in range(100000) %}{{ line }}{% endfor %}", "max_output_chars", wide, line="y" * 50)


def test_runaway_recursion_is_a_limit_not_a_crash():
    with pytest.raises(TemplateLimitError, match="recursion|max_operations"):
        render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")


def test_ordinary_templates_render_unchanged_under_the_limits():
    source = "{% for p in items %}{{ loop.index }}. {{ p|title|center(12) }}{% endfor %} {{ '%05d' % 42 }}"
    assert render(source, items=["tea", "cake"]) == "1.     Tea     2.     Cake     00042"


def test_every_part_is_named_in_the_error():
    tpl = CompiledTemplate(
        TemplateInfo(name="winback", version=3, kind="message", parts={"subject": "Hi", "html": "{{ 'x' * n }}"}),
        {},
        SMALL,
    )
    with pytest.raises(TemplateLimitError, match=r"template winback/html: render limit.*\(customer c9\)"):
        tpl.render({"n": 10**6}, "c9")


def test_static_refusal_at_add(tiny_ws):
    for source, reason in (
        ("{{ 'x'|center(10**9) }}", "filter 'center' gets 1,000,000,000"),
        ("{{ 9 ** (9 ** 9) }}", "exponent 387420489"),
        ("{{ ((9 ** 64) ** 64) ** 64 }}", "power larger than"),
        ("{{ 'x' * 10 ** 7 }}", "repetition builds 10,000,000"),
        ("{% for i in range(10 ** 9) %}{% endfor %}", "range of 1,000,000,000 items"),
    ):
        with pytest.raises(TemplateError, match=reason) as err:
            add_template(tiny_ws, "static", {"html": source})
        assert "template static/html" in str(err.value) and "render limits" in str(err.value)


def test_render_settings_come_from_the_settings_file(tmp_path):
    (tmp_path / "micromarketing.toml").write_text("[render]\nmax_operations = 5000\nmax_seconds = 0.5\n")
    assert load_settings(tmp_path).render.max_operations == 5000
    (tmp_path / "micromarketing.toml").write_text("[render]\nmax_operation = 5000\n")
    with pytest.raises(ConfigError, match="did you mean 'max_operations'"):
        load_settings(tmp_path)
    (tmp_path / "micromarketing.toml").write_text("")
    with pytest.raises(ConfigError, match="MICROMARKETING_RENDER__MAX_SECONDS"):
        load_settings(tmp_path, {"MICROMARKETING_RENDER__MAX_SECONDS": "-1"})


# -- the classes, generated ---------------------------------------------------------------------
_loops = st.lists(st.integers(0, 10**6), min_size=1, max_size=3).map(
    lambda sizes: "".join(f"{{% for i{k} in range(n{k}) %}}" for k in range(len(sizes)))
    + "x"
    + "{% endfor %}" * len(sizes)
)
_pads = st.sampled_from(["center", "indent", "truncate", "wordwrap"]).map(lambda f: f"{{{{ 'ab'|{f}(w) }}}}")
_formats = st.sampled_from(["{{ '%0*d' % (w, 1) }}", "{{ ('{:>' ~ w ~ '}').format(1) }}", "{{ 'ab'.rjust(w) }}"])
_growth = st.sampled_from(
    [
        "{% set ns = namespace(s='ab') %}{% for i in range(n0) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        "{% set ns = namespace(v=3) %}{% for i in range(n0) %}{% set ns.v = ns.v ** 3 %}{% endfor %}{{ ns.v }}",
        "{{ 'ab' * w }}",
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    source=st.one_of(_loops, _pads, _formats, _growth),
    n=st.lists(st.integers(0, 10**6), min_size=3, max_size=3),
    w=st.integers(0, 10**12),
)
def test_any_runaway_template_finishes_bounded_or_is_refused(source, n, w):
    """Whatever the sizes, a render ends within the time budget and its output within the size
    limit, or it is refused with a TemplateError — it never runs away."""
    limits = RenderSettings(max_operations=5_000, max_seconds=0.5, max_output_chars=5_000)
    context = {"n0": n[0], "n1": n[1], "n2": n[2], "w": w}
    start = time.monotonic()
    tracemalloc.start()
    try:
        text = render(source, limits, **context)
    except TemplateError:
        text = ""
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - start < 2.0
    assert len(text) <= limits.max_output_chars
    assert peak < 2_000_000


def test_check_over_a_segment_stops_when_the_template_itself_runs_away(tiny_ws):
    """`template check --segment` must not spend the time budget once per member."""
    from micromarketing.personalize.templates import LIMIT_FAILURES_BEFORE_STOP, check_template
    from micromarketing.segments import Segments

    Segments(tiny_ws).save_discovered(
        "all4", ["c1", "c2", "c3", "c4"], as_of=tiny_ws.table("profiles").as_of.max().execute()
    )
    add_template(tiny_ws, "spin", {"text": "{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}"})
    tiny_ws.context.settings.render.max_seconds = 0.2
    tiny_ws.context.settings.render.max_operations = 10**9
    start = time.monotonic()
    with pytest.raises(TemplateLimitError, match=f"stopped after {LIMIT_FAILURES_BEFORE_STOP} members"):
        check_template(tiny_ws, "spin", "all4", extra={"n": 10**5})
    assert time.monotonic() - start < 0.2 * LIMIT_FAILURES_BEFORE_STOP + 3
