"""The floor plan is enforced: import-linter, with the contracts of pyproject.toml, passes on the
tree as it is and fails — naming the import — when a lower folder imports a higher one or two
folders of one layer import each other (docs/architecture.md). The tests keep one too: a test
module imports no other test module."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT

PACKAGES = ("sensors", "core", "gateway", "broker", "alerts", "dashboards", "cli")
LINT = Path(sys.executable).with_name("lint-imports")


@pytest.fixture
def tree(tmp_path):
    """A copy of the sources laid out as installed (stationwatch/<folder>), with the project's contracts."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / "stationwatch" / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.html", "*.yaml", "*.tmpl"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(tree)})


def add_import(tree: Path, module: str, statement: str) -> None:
    path = tree / "stationwatch" / Path(*module.split(".")).with_suffix(".py")
    path.write_text(path.read_text(encoding="utf-8") + f"\n{statement}\n", encoding="utf-8")


def test_the_tree_keeps_its_layers(tree):
    run = lint(tree)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 kept, 0 broken" in run.stdout


@pytest.mark.parametrize("module, statement, complaint", [
    # the shared model importing the alert service back: the cycle the floor plan removed
    ("core.config", "from stationwatch.alerts import engine  # noqa", "stationwatch.core is not allowed to import stationwatch.alerts"),
    # the Pi's agent reaching into the central ingest: two folders of one layer
    ("gateway.agent", "import stationwatch.broker.ingest  # noqa", "stationwatch.gateway is not allowed to import stationwatch.broker"),
    # a driver importing the config models instead of its protocol (sensors/specs.py)
    ("sensors.contact", "from stationwatch.core.wiring import GpioSource  # noqa", "stationwatch.sensors is not allowed to import stationwatch.core"),
    # the independent watcher borrowing the engine's notice path, which could die with the engine
    ("alerts.watcher", "from stationwatch.alerts import dispatch  # noqa", "stationwatch.alerts.watcher is not allowed to import apprise"),
])
def test_an_import_against_the_layers_fails_and_is_named(tree, module, statement, complaint):
    add_import(tree, module, statement)
    run = lint(tree)
    assert run.returncode != 0
    assert complaint in run.stdout, run.stdout
    assert f"stationwatch.{module} ->" in run.stdout, "the offending import is named"


def test_test_modules_share_through_support_and_conftest_only():
    """What more than one test module uses lives in tests/support/ (or tests/modbus_line.py), its
    fixtures in tests/conftest.py; importing it from another test module is named here."""
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module]
            else:
                continue
            found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {m}" for m in modules
                      if m.split(".")[0].startswith("test_")]
    assert found == [], "\n".join(found)
