"""Every command a user can type and every model they can query is documented in the README."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import duckdb
import pytest
from cekura_sessions import exit_codes
from cekura_sessions.cli import main as cli
from cekura_sessions.extract.contract import markdown_raw_tables
from cekura_sessions.models.runner import build_models
from cekura_sessions.settings import SQL_DIR

pytestmark = pytest.mark.e2e  # builds the models in DuckDB and runs the README's command in a subprocess

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MARTS_DECLARED = tomllib.loads((SQL_DIR / "models.toml").read_text())
STAGING_DECLARED = MARTS_DECLARED.pop("staging")  # [staging.<view>]


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


def _options() -> list[tuple[str, str]]:
    """(command, option) for every option a user can pass."""
    parser = cli._parser()
    found = [("", o) for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"]
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, sub in actions[0].choices.items():
        found += [(name, o) for a in sub._actions for o in a.option_strings if o.startswith("--") and o != "--help"]
    return found


@pytest.mark.parametrize("command, option", _options())
def test_readme_documents_every_option(command, option):
    assert f"`{option}" in README, f"`cekura-sessions {command} {option}` is not in README.md"


def test_readme_raw_tables_are_the_contracts_generated_block():
    start, end = "<!-- raw-tables:start -->", "<!-- raw-tables:end -->"
    assert README.count(start) == 1 and README.count(end) == 1, "README.md needs each marker once"
    block = README.split(start, 1)[1].split(end, 1)[0]
    assert block == "\n" + markdown_raw_tables(), (
        "README.md's raw tables differ from extract/contract.py; paste the output of "
        "`python -c 'from cekura_sessions.extract.contract import markdown_raw_tables as m; print(m(), end=\"\")'` "
        "between the markers"
    )


@pytest.mark.parametrize("table, declaration", sorted(
    [*((f"analytics.{model}", d) for model, d in MARTS_DECLARED.items()),
     *((f"staging.{view}", d) for view, d in STAGING_DECLARED.items())]))
def test_readme_model_table_shows_the_declared_key(table, declaration):
    row = next((line for line in README.splitlines() if line.startswith(f"| `{table}` |")), None)
    assert row is not None, f"README.md's model tables have no row for {table}"
    assert row.rstrip().endswith(f"| `{', '.join(declaration['key'])}` |"), row


def test_readme_data_dictionary_command_prints_the_comments(tmp_path):
    line = next(line for line in README.splitlines() if "duckdb_columns()" in line)
    program, flag, code = shlex.split(line)
    assert (program, flag) == (".venv/bin/python", "-c"), line
    db = tmp_path / "demo.duckdb"
    with duckdb.connect(str(db)) as con:
        build_models(con)
    done = subprocess.run([sys.executable, "-c", code.replace("'demo.duckdb'", repr(str(db)))],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    # one row per declared column (DuckDB shows some of them), with the declared comments
    meanings = [text for model in MARTS_DECLARED.values() for text in model["columns"].values()]
    assert f"{len(meanings)} rows" in done.stdout, done.stdout
    assert sum(1 for text in set(meanings) if f"│ {text} " in done.stdout) >= 5, done.stdout


def _readme_table(heading: str) -> list[list[str]]:
    """The body rows of the first table under `heading`, each a list of its cells."""
    section = README.split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_readme_run_exit_codes_are_the_exit_code_table():
    codes = [int(code) for row in _readme_table("### Exit codes of `run`") for code in row[0].split("/")]
    assert codes == [entry.code for entry in exit_codes.RUN], "README.md's run exit codes differ from exit_codes.RUN"


def test_readme_status_exit_codes_are_the_exit_code_table():
    rows = [(int(row[0]), row[1]) for row in _readme_table("### Exit codes of `status`")]
    assert rows == [(entry.code, entry.name) for entry in exit_codes.STATUS], (
        "README.md's status exit codes differ from exit_codes.STATUS")


def test_quick_start_is_the_two_make_commands():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quick_start and "make test" in quick_start


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
