"""sql/models.toml: its descriptions become the database's data dictionary (COMMENT ON), and a
declaration that is malformed or disagrees with its model fails the build, keeping the
previous models.

Expected comments are read from models.toml with tomllib and from the contract's columns
directly, not through the code under test.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import duckdb
import pytest
from cekura_sessions.extract import contract
from cekura_sessions.models import runner
from cekura_sessions.models.checks import CheckError, run_checks
from cekura_sessions.models.runner import (
    ModelBuildError,
    build_models,
    inputs_fingerprint,
)
from cekura_sessions.settings import SQL_DIR
from support import raw_data
from support.raw_data import VARIED

TOML_TEXT = (SQL_DIR / "models.toml").read_text()
DECLARED = tomllib.loads(TOML_TEXT)
STAGING_DECLARED = DECLARED.pop("staging")  # [staging.<view>]: the staging views
# the staging views generated from the row contract rather than read from a file
GENERATED_VIEWS = {"stg_session_statuses"}
# scenario_stats' declaration, its sub-tables included (the next model's follows it)
SCENARIO_STATS_BLOCK = TOML_TEXT[TOML_TEXT.index("[scenario_stats]\n"):TOML_TEXT.index("[session_status_changes]\n")]


def copied_db(made: Path, path: Path) -> duckdb.DuckDBPyConnection:
    """A connection to a copy of the closed database `made` at `path`."""
    return duckdb.connect(str(shutil.copy(made, path)))


def copied_sql(tmp_path: Path) -> Path:
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    return sql_dir


def comments(con: duckdb.DuckDBPyConnection, schema: str) -> dict[tuple[str, str], str | None]:
    return {
        (table, column): comment
        for table, column, comment in con.execute(
            "select table_name, column_name, comment from duckdb_columns() where schema_name = ?", [schema]
        ).fetchall()
    }


def table_comments(con: duckdb.DuckDBPyConnection, schema: str) -> dict[str, str | None]:
    return dict(con.execute(
        "select table_name, comment from duckdb_tables() where schema_name = ?", [schema]
    ).fetchall())


@pytest.fixture(scope="module")
def varied_file(tmp_path_factory) -> Path:
    """A closed database with the raw tables and VARIED's rows, no models: a test copies it
    (milliseconds) rather than load VARIED again (support/raw_data.py inserts row by row)."""
    path = tmp_path_factory.mktemp("varied") / "cekura.duckdb"
    with duckdb.connect(str(path)) as con:
        raw_data.create_raw_tables(con)
        raw_data.load(con, VARIED)
    return path


@pytest.fixture(scope="module")
def built_file(varied_file, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """varied_file with the models built from the real sql/ in a closed database, and the build's
    row counts: the data dictionary's tests read it, a test breaking a declaration copies it."""
    path = tmp_path_factory.mktemp("dictionary") / "cekura.duckdb"
    with copied_db(varied_file, path) as con:
        counts = build_models(con)
    return path, counts


@pytest.fixture(scope="module")
def built(built_file) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(built_file[0]), read_only=True)
    yield con
    con.close()


# --- the data dictionary ------------------------------------------------------------------


def test_every_mart_is_declared():
    assert sorted(DECLARED) == sorted(p.stem for p in (SQL_DIR / "marts").glob("*.sql"))


def test_every_staging_view_is_declared():
    assert sorted(STAGING_DECLARED) == sorted({p.stem for p in (SQL_DIR / "staging").glob("*.sql")} | GENERATED_VIEWS)


def test_every_staging_view_and_column_has_its_declared_comment(built):
    want = {(view, column): text
            for view, table in STAGING_DECLARED.items() for column, text in table["columns"].items()}
    assert comments(built, "staging") == want
    views = dict(built.execute(
        "select view_name, comment from duckdb_views() where schema_name = 'staging'").fetchall())
    assert views == {
        view: f"{table['description']} Grain: {table['grain']}. Key: {', '.join(table['key'])}."
        for view, table in STAGING_DECLARED.items()
    }


def test_every_analytics_column_has_its_declared_comment(built):
    want = {(model, column): text for model, table in DECLARED.items() for column, text in table["columns"].items()}
    got = comments(built, "analytics")
    assert got == want
    assert all(text.strip() for text in got.values()), "no empty comment"


def test_every_analytics_table_has_its_description_grain_and_key(built):
    want = {
        model: f"{table['description']} Grain: {table['grain']}. Key: {', '.join(table['key'])}."
        for model, table in DECLARED.items()
    }
    assert table_comments(built, "analytics") == want


def test_raw_tables_and_columns_have_the_contracts_descriptions(built):
    want = {(t.name, c.name): c.description for t in contract.MODEL_INPUTS for c in t.columns}
    assert comments(built, "cekura_raw") == want
    assert table_comments(built, "cekura_raw") == {t.name: t.description for t in contract.MODEL_INPUTS}
    # the projects table's note on what is never stored stays out of the file
    assert contract.PROJECTS.note and all("webhook" not in t.description for t in contract.RAW_TABLES)


def test_raw_tables_loaded_by_dlt_keep_their_comments_night_after_night(run_night, first_night, api, dataset, db_path):
    first_night()
    api.dataset = dataset.next_night(seed=41)
    assert run_night().exit_code == 0
    with duckdb.connect(str(db_path), read_only=True) as con:
        got = comments(con, "cekura_raw")
        tables = table_comments(con, "cekura_raw")
    by_table = {t.name: t for t in contract.RAW_TABLES}
    want = {
        (table, column): next((c.description for c in by_table[table].columns + by_table[table].internal
                               if c.name == column), None)
        for table, column in got
        if table in by_table
    }
    assert {key: got[key] for key in want} == want
    described = [key for key, text in want.items() if text]
    assert len(described) >= sum(len(by_table[t].columns) for t in ("projects", contract.SESSIONS_TABLE)), described
    assert {name: tables[name] for name in by_table if name in tables} == {
        name: by_table[name].description for name in by_table if name in tables}
    # the run's ledger, written beside dlt: the table and every column explained
    ledger = {column: text for (table, column), text in got.items() if table == "pipeline_runs"}
    assert len(ledger) >= 12 and all(text and text.strip() for text in ledger.values()), ledger
    assert "run_id" in ledger and tables["pipeline_runs"], tables


# --- declarations that disagree with the models ---------------------------------------------


def _edit(sql_dir: Path, old: str, new: str) -> None:
    path = sql_dir / "models.toml"
    text = path.read_text()
    assert text.count(old) == 1, f"models.toml has not exactly one {old!r}"
    path.write_text(text.replace(old, new))


MISMATCHES = [
    pytest.param(
        ('title = "the session\'s title"\n', 'title = "the session\'s title"\nsummary = "a column the model lacks"\n'),
        "models.toml: [sessions.columns] declares summary, which analytics.sessions does not have",
        id="declared-column-missing-from-model",
    ),
    pytest.param(
        ('title = "the session\'s title"\n', ""),
        "models.toml: [sessions.columns] does not declare title of analytics.sessions",
        id="model-column-not-declared",
    ),
    pytest.param(
        ('title = "the session\'s title as delivered"\n', ""),
        "models.toml: [staging.stg_sessions.columns] does not declare title of staging.stg_sessions",
        id="staging-column-not-declared",
    ),
    pytest.param(
        (SCENARIO_STATS_BLOCK, ""),
        "models.toml: no declaration for the model(s) scenario_stats of marts/; add a table for each, "
        "with its description, grain, key and columns",
        id="mart-without-declaration",
    ),
]


@pytest.mark.parametrize("edit, message", MISMATCHES)
def test_declaration_that_disagrees_with_its_model_fails_the_build(tmp_path, built_file, edit, message):
    sql_dir = copied_sql(tmp_path)
    # the models as built from the unedited sql/ (built_file): the previous models a failed build keeps
    made, before = built_file
    con = copied_db(made, tmp_path / "cekura.duckdb")
    comments_before = comments(con, "analytics")
    _edit(sql_dir, *edit)
    raw_data.load(con, raw_data.RawData(sessions=[raw_data.session(9001, 101, "completed", None, None)]))
    with pytest.raises(ModelBuildError) as caught:
        build_models(con, sql_dir)
    assert str(caught.value) == message
    assert caught.value.file == "models.toml"
    counts = {name: con.execute(f"select count(*) from analytics.{name}").fetchone()[0] for name in before}
    assert counts == before, "a failed build keeps the previous models"
    assert comments(con, "analytics") == comments_before


def test_declaration_without_a_mart_fails_the_build(tmp_path, varied_file):
    sql_dir = copied_sql(tmp_path)
    (sql_dir / "marts" / "scenario_stats.sql").unlink()
    con = copied_db(varied_file, tmp_path / "cekura.duckdb")
    message = r"^models\.toml: declares model\(s\) scenario_stats, which marts/ has no file for$"
    with pytest.raises(ModelBuildError, match=message):
        build_models(con, sql_dir)


# --- malformed declarations -------------------------------------------------------------------

MALFORMED = [
    pytest.param(
        ('still listed"\nkey = ["session_id"]\n', 'still listed"\nkeys = ["session_id"]\n'),
        r"\[sessions\] unknown keys \['keys'\]", id="unknown-key",
    ),
    pytest.param(
        ('still listed"\nkey = ["session_id"]\n', 'still listed"\nkey = ["id"]\n'),
        r"\[sessions\] key names columns not in the model's columns: id", id="key-column-not-declared",
    ),
    pytest.param(
        ("[sessions.not_null.created_at]\n", "[sessions.not_null.nope]\n"),
        r"\[sessions.not_null.nope\] names columns not in the model's columns: nope", id="rule-on-unknown-column",
    ),
    pytest.param(
        ('"contract:SESSION_STATUSES"', '"contract:STATUSES"'),
        r"\[sessions.accepted_values.status\] values 'contract:STATUSES' is not one of", id="unknown-contract-name",
    ),
    pytest.param(
        ('severity = "warning"\ndescription = "Every session has',
         'severity = "fatal"\ndescription = "Every session has'),
        r"\[sessions.not_null.created_at\] severity must be one of error, warning", id="unknown-severity",
    ),
    pytest.param(
        ('[session_scenarios.relationships.session_id]\nto = "sessions.session_id"',
         '[session_scenarios.relationships.session_id]\nto = "sessionz.session_id"'),
        r"\[session_scenarios.relationships.session_id\] to analytics.sessionz is not a declared model",
        id="relationship-to-unknown-model",
    ),
    pytest.param(
        ('grain = "one row per session that exists upstream, in a project that is not deleted and still listed"',
         'grain = ""'),
        r"\[sessions\] grain must be a one-line text", id="empty-grain",
    ),
    pytest.param(
        ("[sessions.columns]\n", "[sessions.columns\n"), r"Expected ']'", id="not-toml",
    ),
    pytest.param(
        ('[scenario_stats.accepted_range.completion_rate]\nmin = 0\n',
         '[scenario_stats.accepted_range.completion_rate]\nmin = "0"\n'),
        r"\[scenario_stats.accepted_range.completion_rate\] min must be a number", id="range-bound-not-a-number",
    ),
    pytest.param(
        ('[scenario_stats.accepted_range.completion_rate]\nmin = 0\nmax = 1\n',
         '[scenario_stats.accepted_range.completion_rate]\n'),
        r"\[scenario_stats.accepted_range.completion_rate\] needs min, max or both", id="range-without-bounds",
    ),
    pytest.param(
        ('expression = "observed_to > observed_from"\n', 'expression = ""\n'),
        r"\[session_status_changes.expression.observed_to_after_observed_from\] expression must be one line of SQL",
        id="empty-expression",
    ),
    pytest.param(
        ('in every project"\nkey = ["session_id"]\n', 'in every project"\nkey = ["id"]\n'),
        r"\[staging.stg_sessions\] key names columns not in the model's columns: id", id="staging-key-not-declared",
    ),
]


@pytest.mark.parametrize("edit, message", MALFORMED)
def test_malformed_declarations_fail_the_build_and_the_checks(tmp_path, built_file, edit, message):
    sql_dir = copied_sql(tmp_path)
    # built from the real declarations (built_file): the checks have models to run on
    con = copied_db(built_file[0], tmp_path / "cekura.duckdb")
    _edit(sql_dir, *edit)
    with pytest.raises(ModelBuildError, match=rf"^models\.toml: .*{message}") as caught:
        build_models(con, sql_dir)
    assert caught.value.file == "models.toml"
    with pytest.raises(CheckError, match=rf"^models\.toml: .*{message}"):
        run_checks(con, sql_dir)


# --- a changed declaration rebuilds ------------------------------------------------------------


def test_inputs_fingerprint_covers_models_toml_and_the_contract(tmp_path, varied_file, monkeypatch):
    sql_dir = copied_sql(tmp_path)
    con = copied_db(varied_file, tmp_path / "cekura.duckdb")
    first = inputs_fingerprint(con, sql_dir)
    assert inputs_fingerprint(con, sql_dir) == first, "same inputs, same fingerprint"
    _edit(sql_dir, 'title = "the session\'s title"', 'title = "what the session is called"')
    declared = inputs_fingerprint(con, sql_dir)
    assert declared != first, "a changed description must rebuild"
    ddl = contract.raw_tables_ddl()
    monkeypatch.setattr(runner, "raw_tables_ddl", lambda: ddl.replace("title text", "title varchar"))
    assert inputs_fingerprint(con, sql_dir) != declared, "a changed raw DDL must rebuild"
