"""Every command a user can type and every model they can query is documented in the README."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from cekura_sessions.cli import main as cli
from cekura_sessions.settings import SQL_DIR

pytestmark = pytest.mark.e2e  # reads the CLI's parser, which imports the whole pipeline (dlt)

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _subcommands() -> list[str]:
    parser = cli._parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(actions[0].choices)


@pytest.mark.parametrize("command", _subcommands())
def test_readme_documents_command(command):
    assert f"cekura-sessions {command}" in README, f"`cekura-sessions {command}` is not in README.md"


@pytest.mark.parametrize("model", sorted(p.stem for p in (SQL_DIR / "marts").glob("*.sql")))
def test_readme_documents_model(model):
    assert f"analytics.{model}" in README, f"model analytics.{model} is not in README.md"


@pytest.mark.parametrize("option", ["--base-url", "--project-id", "--db", "--no-models", "--concurrency", "--db-wait", "--log-format"])
def test_readme_documents_run_option(option):
    assert option in README


def test_quick_start_is_the_two_make_commands():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quick_start and "make test" in quick_start


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
