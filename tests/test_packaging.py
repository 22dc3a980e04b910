"""Packaging (issue #12, item 9): what ``pip install .`` installs is what the code imports.

``pyproject.toml``'s ``dependencies`` must name the distribution of every third-party module that
``src/`` imports (a package that is only in ``requirements.lock``, or only arrives as someone
else's dependency, breaks a plain install: matplotlib did).  ``make test`` also runs ``deptry
src``; this test checks the same class of mistake without it, and that the check stays wired.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "micromarketing"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    return _normalise(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0])


def _top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_every_imported_distribution_is_declared():
    declared = {_requirement_name(spec) for spec in PYPROJECT["project"]["dependencies"]}
    distributions = packages_distributions()
    missing = {}
    for path in sorted(SRC.rglob("*.py")):
        for module in _top_level_imports(path):
            if module == "micromarketing" or module in sys.stdlib_module_names or module == "__future__":
                continue
            dists = {_normalise(d) for d in distributions.get(module, [module])}
            if not dists & declared:
                missing.setdefault(module, []).append(str(path.relative_to(ROOT)))
    assert not missing, f"imported but not in pyproject dependencies: {missing}"


def test_the_dependency_check_runs_in_make_test():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "deptry src" in recipe and recipe.index("deptry src") < recipe.index("pytest")
    assert "tool" in PYPROJECT and "deptry" in PYPROJECT["tool"]
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    assert re.search(r"^deptry==", lock, re.MULTILINE)


def test_deptry_passes():
    deptry = Path(sys.executable).with_name("deptry")
    if not deptry.exists():
        pytest.skip("deptry is not installed in this environment (make install adds it)")
    result = subprocess.run([str(deptry), "src"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
