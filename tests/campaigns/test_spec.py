"""The campaign file: the issue's shape validates; every mistake is one error naming file, line
and key path; references are checked against the workspace."""

from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micromarketing.campaigns.spec import check_budget, check_references, load_spec, parse_spec
from micromarketing.errors import InvalidInputError

ISSUE_SHAPE = """\
name: spring_winback
objective: conversion            # conversion | revenue | retention
attribution_days: 7
control_share: 0.10              # per segment, held out and never contacted
budget: 5000
send_window: {start: 2026-07-01T09:00:00Z, end: 2026-07-03T18:00:00Z}   # optional
segments:
  - segment: lapsed_vip
    variants:
      - {name: a, template: winback, offer: spring10, channel: email, share: 0.5}
      - {name: b, template: winback, channel: email, share: 0.5}
"""


def test_the_issue_shape_validates():
    spec = parse_spec(ISSUE_SHAPE, "spring.yaml")
    assert spec.name == "spring_winback" and spec.budget == 5000
    assert spec.send_window is not None and spec.send_window.start.tzinfo is not None
    seg = spec.segments[0]
    assert [v.name for v in seg.variants] == ["a", "b"] and spec.control_share_of(seg) == 0.10
    assert seg.variants[0].offer == "spring10" and seg.variants[1].offer is None


def test_fingerprint_ignores_formatting_but_not_content():
    same = parse_spec(ISSUE_SHAPE.replace("# optional", "").replace("0.10", "0.1"))
    assert same.sha256 == parse_spec(ISSUE_SHAPE).sha256
    assert parse_spec(ISSUE_SHAPE.replace("5000", "6000")).sha256 != same.sha256


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("objective: conversion", "objectiv: conversion"),
            r"spring.yaml line 2: objectiv: unknown key \(did you mean 'objective'\?\)",
        ),
        (("share: 0.5}\n", "share: 0.4}\n"), r"line 8: segments\[0\]: variant shares sum to 0.9, not 1"),
        (("2026-07-03T18", "2026-06-03T18"), r"line 6: send_window: end .* is not after start"),
        (
            ("start: 2026-07-01T09:00:00Z", "start: 2026-07-01 09:00:00"),
            r"send_window.start: needs a time zone",
        ),
        (
            ("channel: email, share: 0.5}\n", "channel: fax, share: 0.5}\n"),
            r"segments\[0\]\.variants\[0\]\.channel: Input should be 'email'",
        ),
        (("control_share: 0.10", "control_share: 1.5"), r"line 4: control_share: .*less than 1 \(got 1.5\)"),
        (("budget: 5000", "budget: lots"), r"budget: .*valid number"),
        (
            ("{name: b, template: winback, ", "{name: b, "),
            r"variants\[1\]: .*variants on the email channel need a template",
        ),
        (("name: b", "name: a"), r"variant name\(s\) used twice: a"),
        (("attribution_days: 7", "attribution_days: 0"), r"attribution_days: .*greater than or equal to 1"),
    ],
)
def test_each_mistake_names_file_line_and_key(change, expected):
    with pytest.raises(InvalidInputError, match=expected):
        parse_spec(ISSUE_SHAPE.replace(*change, 1), "spring.yaml")


def test_yaml_syntax_and_file_errors(tmp_path):
    with pytest.raises(InvalidInputError, match=r"bad.yaml line 1, column 8: invalid YAML"):
        parse_spec("name: [", "bad.yaml")
    with pytest.raises(InvalidInputError, match="expected a mapping"):
        parse_spec("- just\n- a list\n", "bad.yaml")
    with pytest.raises(InvalidInputError, match="no such file"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(InvalidInputError, match="is a directory"):
        load_spec(tmp_path)


def test_budget_below_cost():
    spec = parse_spec(ISSUE_SHAPE)
    check_budget(spec, 4999.5)
    with pytest.raises(InvalidInputError, match=r"budget: 5000 is below the plan's cost 5000.01"):
        check_budget(spec, 5000.01)


def test_references_against_the_workspace(shop):
    good = ISSUE_SHAPE.replace("lapsed_vip", "lyon")
    check_references(shop.context, parse_spec(good), "f.yaml")
    bad = (
        good.replace("segment: lyon", "segment: lyom")
        .replace("offer: spring10", "offer: summer")
        .replace("{name: b, template: winback", "{name: b, template: winbak")
    )
    with pytest.raises(InvalidInputError) as info:
        check_references(shop.context, parse_spec(bad), "f.yaml")
    lines = str(info.value).splitlines()
    assert "f.yaml: segments[0].segment: unknown segment 'lyom' (did you mean 'lyon'?)" in lines
    assert any("variants[0].offer: unknown offer 'summer'" in line for line in lines)
    assert any(
        "variants[1].template: unknown template 'winbak' (did you mean 'winback'?)" in line for line in lines
    )


@pytest.mark.parametrize(
    ("template", "channel", "missing"),
    [("textonly", "email", "subject"), ("ping", "email", "subject"), ("winback", "sms", "sms")],
)
def test_template_missing_the_part_its_channel_needs(shop, template, channel, missing):
    text = ISSUE_SHAPE.replace("lapsed_vip", "lyon").replace("offer: spring10, ", "")
    text = text.replace("template: winback, channel: email", f"template: {template}, channel: {channel}")
    with pytest.raises(
        InvalidInputError,
        match=rf"template '{template}' has no {missing} part, which the {channel} channel needs",
    ):
        check_references(shop.context, parse_spec(text), "f.yaml")


# -- property: generated bad specs --------------------------------------------------------------
GOOD = yaml.safe_load(ISSUE_SHAPE)
KEY_PATHS = [
    ("name",),
    ("objective",),
    ("attribution_days",),
    ("control_share",),
    ("budget",),
    ("send_window", "start"),
    ("segments", 0, "segment"),
    ("segments", 0, "variants", 0, "share"),
    ("segments", 0, "variants", 1, "channel"),
    ("segments", 0, "variants", 0, "name"),
]
BAD_VALUES = st.one_of(
    st.just(None),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(min_size=1, max_size=3), st.integers(), min_size=1, max_size=2),
    st.floats(min_value=1.01, max_value=1e6),
    st.floats(max_value=-0.01, min_value=-1e6),
    st.text(alphabet="!? /\\", min_size=1, max_size=5),
)


def _copy(value):
    return yaml.safe_load(yaml.safe_dump(value))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(KEY_PATHS),
    value=BAD_VALUES,
    extra=st.one_of(st.none(), st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12)),
)
def test_generated_bad_specs_fail_with_a_key_path(path, value, extra):
    data = _copy(GOOD)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    known = {
        "name",
        "description",
        "objective",
        "attribution_days",
        "control_share",
        "budget",
        "priority",
        "transactional",
        "send_window",
        "segments",
    }
    if extra is not None and extra not in known:
        data["segments"][0]["variants"][0][extra] = 1
    text = yaml.safe_dump(data)
    try:
        parse_spec(text, "gen.yaml")
    except InvalidInputError as exc:
        message = str(exc)
        assert message.startswith("gen.yaml"), message
        assert "Traceback" not in message
        for line in message.splitlines():
            assert re.match(r"gen\.yaml( line \d+)?: (\(top level\)|[A-Za-z_][A-Za-z_\[\]0-9.]*): ", line), (
                line
            )
        return
    # Some "bad" values are valid for the key (a float budget, a text name): then the spec parses.
    assert path[-1] in ("budget", "name", "segment") or isinstance(value, float)


@settings(max_examples=100, deadline=None)
@given(shares=st.lists(st.floats(min_value=0.001, max_value=1), min_size=1, max_size=6))
def test_shares_must_sum_to_one(shares):
    data = _copy(GOOD)
    data["segments"][0]["variants"] = [
        {"name": f"v{i}", "template": "t", "share": s} for i, s in enumerate(shares)
    ]
    total = sum(shares)
    if abs(total - 1) <= 1e-6:
        parse_spec(yaml.safe_dump(data))
    else:
        with pytest.raises(InvalidInputError, match=r"segments\[0\]: variant shares sum to"):
            parse_spec(yaml.safe_dump(data))
