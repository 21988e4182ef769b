"""What an older layout left in `analytics`, dropped so users see only the models there (DuckDB
only: no PostgreSQL database ever had that layout).

Before the staging views and the bookkeeping had schemas of their own, a build created
`analytics.stg_*` views, the macro `analytics.iso_timestamp`, and the tables `analytics._build`
and `analytics._checks`. A build runs `drop_old_layout` inside its transaction, so a database
is cleaned up by its first build in the new layout, or not at all if that build fails.
"""

from __future__ import annotations

from cekura_sessions.destination.warehouse import Warehouse
from cekura_sessions.settings import ANALYTICS_SCHEMA

OLD_STAGING_PREFIX = "stg_"
OLD_TABLES = ("_build", "_checks")
OLD_MACROS = ("iso_timestamp",)


def drop_old_layout(con: Warehouse) -> list[str]:
    """Drop the old layout's objects from `analytics`; return their qualified names (empty on a
    database that never had them). The views go before the macro they call."""
    views = [name for (name,) in con.execute(
        "select view_name from duckdb_views() where database_name = current_database() "
        "and schema_name = ? and starts_with(view_name, ?) order by view_name",
        [ANALYTICS_SCHEMA, OLD_STAGING_PREFIX],
    ).fetchall()]
    tables = _present(con, "select table_name from duckdb_tables()", OLD_TABLES)
    macros = _present(con, "select function_name from duckdb_functions()", OLD_MACROS)
    for name in views:
        con.execute(f"drop view {ANALYTICS_SCHEMA}.{name}")
    for name in tables:
        con.execute(f"drop table {ANALYTICS_SCHEMA}.{name}")
    for name in macros:
        con.execute(f"drop macro {ANALYTICS_SCHEMA}.{name}")
    return [f"{ANALYTICS_SCHEMA}.{name}" for name in (*views, *tables, *macros)]


def _present(con: Warehouse, catalog: str, names: tuple[str, ...]) -> list[str]:
    """Those of `names` that `catalog` (a duckdb_* listing) has in analytics of this database."""
    query = f"{catalog} where database_name = current_database() and schema_name = ?"
    found = {name for (name,) in con.execute(query, [ANALYTICS_SCHEMA]).fetchall()}
    return [name for name in names if name in found]
