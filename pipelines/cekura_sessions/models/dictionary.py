"""The data dictionary, kept in the database: COMMENT ON the analytics models and their columns
(from sql/models.toml) and on the raw tables' columns (from extract/contract.py), so

    select table_name, column_name, comment from duckdb_columns() where schema_name = 'analytics'

explains every column. Run inside the build's transaction, right after the models are created
(`create or replace` drops a table's comments).
"""

from __future__ import annotations

from cekura_sessions.destination.warehouse import Warehouse
from cekura_sessions.extract.contract import RAW_SCHEMA, RAW_TABLES
from cekura_sessions.models.declarations import DeclarationError, ModelDeclaration
from cekura_sessions.settings import ANALYTICS_SCHEMA


def comment_models(
    con: Warehouse, declarations: dict[str, ModelDeclaration], marts: list[str]
) -> None:
    """Comment each built mart and its columns from its declaration. Raises DeclarationError
    when a mart has no declaration (or a declaration no mart), or when the declared columns and
    the model's columns differ."""
    _expect_same_models(set(marts), set(declarations))
    for name in marts:
        declaration = declarations[name]
        _expect_same_columns(declaration, _columns(con, ANALYTICS_SCHEMA, name))
        statements = [f"comment on table {ANALYTICS_SCHEMA}.{name} is {_literal(table_comment(declaration))}"]
        statements += [
            f"comment on column {ANALYTICS_SCHEMA}.{name}.{column} is {_literal(meaning)}"
            for column, meaning in declaration.columns.items()
        ]
        con.execute(";\n".join(statements))


def comment_raw_tables(con: Warehouse) -> None:
    """Comment the columns of the contract's raw tables that exist (dlt creates a table on its
    first load only, and may leave out a column never delivered). The tables themselves get no
    comment: the projects table's description names what is never stored (emails, webhook
    URLs), and tests scan the database file for those words as the sign of a leak."""
    for table, columns in raw_descriptions():
        present = _columns(con, RAW_SCHEMA, table)
        statements = [
            f"comment on column {RAW_SCHEMA}.{table}.{column} is {_literal(meaning)}"
            for column, meaning in columns.items()
            if column in present
        ]
        if statements:
            con.execute(";\n".join(statements))


def table_comment(declaration: ModelDeclaration) -> str:
    """The model's comment: `<description> Grain: <grain>. Key: <columns>.`"""
    return f"{declaration.description} Grain: {declaration.grain}. Key: {', '.join(declaration.key)}."


def raw_descriptions() -> list[tuple[str, dict[str, str]]]:
    """[(raw table, {column: meaning})] from the contract, the source's internal columns
    included (they are stored, always NULL)."""
    return [(table.name, {c.name: c.description for c in table.columns + table.internal}) for table in RAW_TABLES]


def _expect_same_models(marts: set[str], declared: set[str]) -> None:
    if marts - declared:
        raise DeclarationError(
            f"no declaration for the model(s) {', '.join(sorted(marts - declared))} of marts/; "
            "add a table for each, with its description, grain, key and columns"
        )
    if declared - marts:
        raise DeclarationError(f"declares model(s) {', '.join(sorted(declared - marts))}, which marts/ has no file for")


def _expect_same_columns(declaration: ModelDeclaration, columns: list[str]) -> None:
    where = f"[{declaration.name}.columns]"
    missing = [c for c in declaration.columns if c not in columns]
    if missing:
        raise DeclarationError(
            f"{where} declares {', '.join(missing)}, which {ANALYTICS_SCHEMA}.{declaration.name} does not have"
        )
    undeclared = [c for c in columns if c not in declaration.columns]
    if undeclared:
        raise DeclarationError(
            f"{where} does not declare {', '.join(undeclared)} of {ANALYTICS_SCHEMA}.{declaration.name}"
        )


def _columns(con: Warehouse, schema: str, table: str) -> list[str]:
    """The table's columns in order; empty when there is no such table."""
    return con.columns(schema, table)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
