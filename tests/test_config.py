"""Settings (issue #12, item 7): every bad setting is a ConfigError whose lines name their source.

The file and the environment are both checked: unknown keys are errors with a did-you-mean, bad
values name the file and key (``…/micromarketing.toml: [clv] margin: …``) or the variable
(``environment MICROMARKETING_CLV__MARGIN: …``).  The property tests throw random unknown keys and
random values at every setting, in the file and in variables, and accept only settings or a
ConfigError whose every line names a source.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from micromarketing.cli.main import app
from micromarketing.config import SETTINGS_FILE, Settings, load_settings
from micromarketing.errors import ConfigError

SECTIONS = {name: info.annotation for name, info in Settings.model_fields.items() if name != "currency"}
FIELDS = [(section, key) for section, model in SECTIONS.items() for key in model.model_fields]


def _write(root: Path, content: bytes | str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / SETTINGS_FILE
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _error(root: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(root, environ or {})
    return str(info.value)


@pytest.mark.parametrize(
    ("content", "environ", "expected"),
    [
        ("[clv]\nmargn = 0.9\n", {}, "toml: [clv] margn: unknown key (did you mean 'margin'?)"),
        ("curency = 'EUR'\n", {}, "toml: curency: unknown key (did you mean 'currency'?)"),
        ("[warehous]\npath = 'w.duckdb'\n", {}, "toml: warehous: unknown key (did you mean 'warehouse'?)"),
        (b"currency = '\xff'\n", {}, "toml: not UTF-8 text (byte 0xff at line 1, column 13)"),
        ("[clv\n", {}, "toml: invalid TOML: "),
        ("[warehouse]\nmemory_limit = 'lots'\n", {}, "memory_limit: expected a positive size"),
        ("[warehouse]\nthreads = 0\n", {}, "toml: [warehouse] threads: "),
        ("[ops]\nurl = 'garbage://x'\n", {}, "toml: [ops] url: unsupported database 'garbage'"),
        ("[ops]\nurl = 'postgres://h/db'\n", {}, "(did you mean 'postgresql'?)"),
        ("[ops]\nurl = 'not a url'\n", {}, "toml: [ops] url: not a database URL"),
        ("[warehouse]\npath = 'missing/w.duckdb'\n", {}, "toml: [warehouse] path: directory "),
        ("[ops]\nurl = 'sqlite:///missing/ops.sqlite'\n", {}, "toml: [ops] url: directory "),
        ("clv = 3\n", {}, "toml: clv: "),
        (
            "",
            {"MICROMARKETING_WAREHOUSE__THREADS": "99999999999"},
            "environment MICROMARKETING_WAREHOUSE__THREADS: Input should be less than or equal to 1024",
        ),
        (
            "",
            {"MICROMARKETING_SEGMENTS__SENSITIVE_FIELDS": "[bad"},
            "environment MICROMARKETING_SEGMENTS__SENSITIVE_FIELDS: not valid JSON",
        ),
        ("", {"MICROMARKETING_CLV": "{not json"}, "environment MICROMARKETING_CLV: not valid JSON"),
        (
            "",
            {"MICROMARKETING_CLV__MARGN": "0.9"},
            "environment MICROMARKETING_CLV__MARGN: unknown key (did you mean MICROMARKETING_CLV__MARGIN?)",
        ),
        ("", {"MICROMARKETING_CLV": '{"margn": 1}'}, "environment MICROMARKETING_CLV: margn: unknown key"),
        ("", {"MICROMARKETING_WAREHOUS__THREADS": "2"}, "MICROMARKETING_WAREHOUS__THREADS: unknown"),
        ("", {"MICROMARKETING_CLV__MARGIN": "lots"}, "environment MICROMARKETING_CLV__MARGIN: Input"),
        (
            "",
            {"MICROMARKETING_WAREHOUSE__PATH": "missing/w.duckdb"},
            "environment MICROMARKETING_WAREHOUSE__PATH: directory ",
        ),
    ],
)
def test_bad_settings_name_their_source(tmp_path, content, environ, expected):
    path = _write(tmp_path / "ws", content)
    message = _error(path.parent, environ)
    assert expected in message
    if environ:
        assert message.startswith("environment ") and str(path) not in message  # not labelled with the file
    else:
        assert message.startswith(str(path))


def test_environment_overrides_the_file_and_ignores_what_is_not_a_setting(tmp_path):
    _write(tmp_path, "[clv]\nmargin = 0.5\n[warehouse]\nmemory_limit = '512MB'\n")
    loaded = load_settings(
        tmp_path,
        {
            "MICROMARKETING_CLV__MARGIN": "0.25",
            "MICROMARKETING_SEGMENTS__SENSITIVE_FIELDS": '["gender", "age"]',
            "MICROMARKETING_INGEST": '{"quarantine_dir": "q"}',
            "MICROMARKETING_WORKSPACE": str(tmp_path),  # the CLI's variable, not a setting
            "MICROMARKETING_SMTP_PASSWORD": "secret",  # secrets named by *_env settings
            "MICROMARKETING_SERVER__SECRET": "secret",
            "OTHER_THING": "x",
        },
    )
    assert loaded.clv.margin == 0.25 and loaded.warehouse.memory_limit == "512MB"
    assert loaded.segments.sensitive_fields == ["gender", "age"] and loaded.ingest.quarantine_dir == "q"


def test_a_byte_order_mark_is_accepted(tmp_path):
    _write(tmp_path, b"\xef\xbb\xbf[clv]\nmargin = 0.5\n")
    assert load_settings(tmp_path, {}).clv.margin == 0.5


def test_the_default_file_round_trips(tmp_path):
    ws = tmp_path / "ws"
    assert CliRunner().invoke(app, ["init", str(ws)]).exit_code == 0
    assert load_settings(ws, {}) == Settings()


def test_cli_prints_one_line_and_exits_2(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    assert CliRunner().invoke(app, ["init", str(ws)]).exit_code == 0
    (ws / SETTINGS_FILE).write_text("[clv]\nmargn = 0.9\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["segment", "list", "-w", str(ws)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert "[clv] margn: unknown key (did you mean 'margin'?)" in result.output
    monkeypatch.setenv("MICROMARKETING_WAREHOUSE__THREADS", "99999999999")
    (ws / SETTINGS_FILE).write_text("", encoding="utf-8")
    result = CliRunner().invoke(app, ["segment", "list", "-w", str(ws)])
    assert result.exit_code == 2 and "environment MICROMARKETING_WAREHOUSE__THREADS" in result.output


# -- properties ----------------------------------------------------------------------------------
names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
toml_values = st.recursive(
    st.none().map(lambda _: "")
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)
env_values = st.text(max_size=30) | toml_values.map(json.dumps) | st.integers().map(str)


def _assert_sourced(message: str, path: Path) -> None:
    for line in message.splitlines():
        assert line.startswith(str(path)) or line.startswith("environment MICROMARKETING_"), line


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=st.sampled_from([None, *SECTIONS]), key=names, value=toml_values)
def test_unknown_keys_are_config_errors(tmp_path, section, key, value):
    known = Settings.model_fields if section is None else SECTIONS[section].model_fields
    if key in known:
        return
    data = {key: value} if section is None else {section: {key: value}}
    path = _write(tmp_path / "unknown", tomli_w.dumps(data))
    message = _error(path.parent)
    assert "unknown key" in message
    _assert_sourced(message, path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    field=st.sampled_from(FIELDS),
    value=toml_values,
    env_field=st.sampled_from(FIELDS),
    env_value=env_values,
    use_env=st.booleans(),
)
def test_random_values_give_settings_or_a_config_error(tmp_path, field, value, env_field, env_value, use_env):
    section, key = field
    path = _write(tmp_path / "values", tomli_w.dumps({section: {key: value}}))
    environ = {f"MICROMARKETING_{env_field[0].upper()}__{env_field[1].upper()}": env_value} if use_env else {}
    try:
        load_settings(path.parent, environ)
    except ConfigError as exc:
        _assert_sourced(str(exc), path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    topics=st.dictionaries(
        st.text(max_size=70) | st.from_regex(r"[a-z][a-z0-9_-]{0,70}\n?", fullmatch=True),
        st.text(max_size=210),
        max_size=4,
    )
)
def test_preference_topics_are_kept_in_order_or_refused_by_name(tmp_path, topics):
    """``[preferences.topics]``: names a campaign and the ledger can carry (lowercase slug, not
    ``marketing``) with a label to show, in the file's order; anything else names the topic."""
    path = _write(tmp_path / "topics", tomli_w.dumps({"preferences": {"topics": topics}}))
    valid = all(
        re.fullmatch(r"[a-z][a-z0-9_-]{0,63}", name) and name != "marketing" and label.strip()
        for name, label in topics.items()
    ) and all(len(label) <= 200 for label in topics.values())
    if valid:
        assert list(load_settings(path.parent, {}).preferences.topics.items()) == list(topics.items())
    else:
        message = _error(path.parent)
        assert message.startswith(f"{path}: [preferences] topics: topic"), message
