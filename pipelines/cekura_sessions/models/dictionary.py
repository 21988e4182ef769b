"""The data dictionary, kept in the database: COMMENT ON the analytics models, the staging views
and their columns (from sql/models.toml), on the raw tables and their columns (from
extract/contract.py) and on the run's ledger, `pipeline_runs` (described here), so

    select table_name, column_name, comment from duckdb_columns() where schema_name = 'analytics'

explains every column. Run inside the build's transaction, right after the models are created
(`create or replace` drops a table's comments).
"""

from __future__ import annotations

from cekura_sessions.destination.warehouse import Warehouse
from cekura_sessions.extract.contract import RAW_SCHEMA, RAW_TABLES
from cekura_sessions.models.declarations import STAGING, DeclarationError, ModelDeclaration
from cekura_sessions.settings import ANALYTICS_SCHEMA, RUNS_TABLE, STAGING_SCHEMA

# The ledger run/ledger.py writes (its DDL is there): its description and its columns' meanings.
RUNS_DESCRIPTION = (
    "one row per run, written by the run itself (not by dlt) as it starts and ends: its outcome, "
    "counts, requests and retries; a row still `running` with no finished_at is a run that was killed"
)
RUNS_COLUMNS = {
    "run_id": "the run's id (also the run_id of its log lines and of the rows it wrote)",
    "started_at": "when the run started",
    "finished_at": "when the run ended; NULL while it runs, or when it was killed before it could say",
    "status": "running, then succeeded, partial, failed or interrupted",
    "exit_code": "the exit code of `cekura-sessions run` (see the README); NULL while running",
    "projects_ok": "how many projects' listings loaded",
    "projects_failed": "JSON object: each failed project's id and why it failed",
    "sessions_loaded": "sessions the run wrote (0 on a night when no listing changed)",
    "http_requests": "HTTP requests the run sent to the API",
    "http_retries": "of those, how many were retries",
    "error": "the run's one-line message when it was not a success; NULL otherwise",
    "sessions_listed": "sessions the run's listings held, written or not",
}


def comment_models(
    con: Warehouse, declarations: dict[str, ModelDeclaration], marts: list[str], views: list[str]
) -> None:
    """Comment each built mart and staging view, and their columns, from its declaration. Raises
    DeclarationError when a model has no declaration (or a declaration no model), or when the
    declared columns and the model's columns differ."""
    _expect_same_models(marts, [d.name for d in declarations.values() if d.schema == ANALYTICS_SCHEMA], "marts")
    _expect_same_models(views, [d.name for d in declarations.values() if d.schema == STAGING_SCHEMA], STAGING)
    present = con.columns_by_table([ANALYTICS_SCHEMA, STAGING_SCHEMA])
    statements: list[str] = []
    for name in [*views, *marts]:
        declaration = declarations[name]
        columns = present.get((declaration.schema, name), [])
        _expect_same_columns(declaration, columns)
        kind = "view" if declaration.schema == STAGING_SCHEMA else "table"
        statements += _comments(kind, declaration.table, table_comment(declaration), declaration.columns, columns)
    _execute_all(con, statements)


def comment_raw_tables(con: Warehouse) -> None:
    """Comment the contract's raw tables that exist and the columns of theirs that exist (dlt
    creates a table on its first load only, and may leave out a column never delivered), and the
    run's ledger. The projects table's comment leaves out its note on what is never stored (emails,
    webhook URLs): tests scan the database file for those words as the sign of a leak."""
    present = con.columns_by_table([RAW_SCHEMA])
    statements: list[str] = []
    for table, description, columns in [*raw_descriptions(), (RUNS_TABLE, RUNS_DESCRIPTION, RUNS_COLUMNS)]:
        statements += _comments("table", f"{RAW_SCHEMA}.{table}", description, columns,
                                present.get((RAW_SCHEMA, table), []))
    _execute_all(con, statements)


def table_comment(declaration: ModelDeclaration) -> str:
    """The model's comment: `<description> Grain: <grain>. Key: <columns>.`"""
    return f"{declaration.description} Grain: {declaration.grain}. Key: {', '.join(declaration.key)}."


def raw_descriptions() -> list[tuple[str, str, dict[str, str]]]:
    """[(raw table, its description, {column: meaning})] from the contract, the source's internal
    columns included (they are stored, always NULL)."""
    return [(table.name, table.description, {c.name: c.description for c in table.columns + table.internal})
            for table in RAW_TABLES]


def _comments(kind: str, table: str, description: str, columns: dict[str, str], present: list[str]) -> list[str]:
    """COMMENT ON statements for the `kind` ("table" or "view") `table` and for those of `columns`
    it has (`present`); none when it has no columns (there is no such table)."""
    if not present:
        return []
    return [f"comment on {kind} {table} is {_literal(description)}"] + [
        f"comment on column {table}.{column} is {_literal(meaning)}"
        for column, meaning in columns.items()
        if column in present
    ]


def _execute_all(con: Warehouse, statements: list[str]) -> None:
    # one round trip for the lot: both engines run a text of several statements in order
    if statements:
        con.execute(";\n".join(statements))


def _expect_same_models(built: list[str], declared: list[str], folder: str) -> None:
    undeclared = ", ".join(sorted(set(built) - set(declared)))
    if undeclared:
        how = "" if folder == "marts" else f" [{STAGING}.<view>]"
        raise DeclarationError(f"no declaration for the model(s) {undeclared} of {folder}/; "
                               f"add a table{how} for each, with its description, grain, key and columns")
    missing = ", ".join(sorted(set(declared) - set(built)))
    if missing:
        raise DeclarationError(f"declares model(s) {missing}, which {folder}/ has no file for")


def _expect_same_columns(declaration: ModelDeclaration, columns: list[str]) -> None:
    where = f"{declaration.opening}.columns]"
    missing = [c for c in declaration.columns if c not in columns]
    if missing:
        raise DeclarationError(f"{where} declares {', '.join(missing)}, which {declaration.table} does not have")
    undeclared = [c for c in columns if c not in declaration.columns]
    if undeclared:
        raise DeclarationError(f"{where} does not declare {', '.join(undeclared)} of {declaration.table}")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
