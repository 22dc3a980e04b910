"""The README's CLI tour, run as a new user would (issue #12, item 9): every command exits 0.

The commands are read from the bash block under "A five-minute tour of the CLI" in README.md
(backslash continuations joined, comments dropped), on 1,500 generated customers instead of
20,000, in a fresh directory, through the installed ``micromarketing`` console script in a
subprocess.  So the README cannot drift from the CLI: a renamed command or option, or an
import that only works in a developer's environment, fails here.

Slow (about a minute or two: ~35 CLI start-ups); deselect with ``-m "not slow"``; ``make test``
runs it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## A five-minute tour of the CLI"
CLI = str(Path(sys.executable).with_name("micromarketing"))
CUSTOMERS = 1500


def tour_commands(readme: str) -> list[list[str]]:
    """The tour's commands as argument lists (``export NAME=value`` kept as a two-item list)."""
    section = readme.split(HEADING, 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, f"no bash block under {HEADING!r} in README.md"
    commands: list[list[str]] = []
    pending = ""
    for line in block.group(1).splitlines():
        if pending:
            line = pending + " " + line.strip()
            pending = ""
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1].rstrip()
            continue
        words = shlex.split(line, comments=True)
        if words:
            commands.append(words)
    assert not pending, "the tour ends inside a continued line"
    return commands


def _scaled(words: list[str]) -> list[str]:
    out = list(words)
    if "--customers" in out:
        out[out.index("--customers") + 1] = str(CUSTOMERS)
    return out


def test_the_tour_is_extracted():
    commands = tour_commands(README.read_text(encoding="utf-8"))
    assert len(commands) > 20
    assert all(c[0] in ("micromarketing", "export") for c in commands), commands
    validate = next(c for c in commands if c[:3] == ["micromarketing", "clv", "validate"])
    assert validate[-2:] == ["--report", "clv.html"]  # the continuation was joined


@pytest.mark.slow
def test_readme_tour_runs(tmp_path):
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("MICROMARKETING_WORKSPACE", None)
    for words in tour_commands(README.read_text(encoding="utf-8")):
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            env[name] = value
            continue
        command = [CLI, *_scaled(words)[1:]]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, (
            f"README tour: `{shlex.join(words)}` exited {result.returncode}\n{result.stderr[-3000:]}"
        )
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert (tmp_path / "clv.html").stat().st_size > 0
    assert (tmp_path / "eco_runners.parquet").exists()
