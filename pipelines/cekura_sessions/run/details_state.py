"""What the details of the stored sessions need, read and kept in the database itself:
which sessions await their detail (newest `updated_at` first), the details that answered 404,
and the clean-up after a night's details loaded (details and messages of sessions removed
upstream go; text stored before goes on a night without --conversation-text).

A session awaits its detail when it is stored, its project is listed and not deleted (it is in
the models), and no detail was read for its current `updated_at`, nor did one answer 404 for it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from cekura_sessions import settings
from cekura_sessions.destination.warehouse import Warehouse, as_warehouse
from cekura_sessions.extract import contract

_RAW = contract.RAW_SCHEMA
_DETAILS = f"{_RAW}.{contract.DETAILS_TABLE}"
_MESSAGES = f"{_RAW}.{contract.MESSAGES_TABLE}"
_SESSIONS = f"{_RAW}.{contract.SESSIONS_TABLE}"
# written by the run, not dlt: a 404 is not a detail, and must not look like one in the raw data
MISSES_TABLE = f"{settings.META_SCHEMA}.detail_misses"

_AWAITING = f"""
    from {_SESSIONS} as s
    inner join {_RAW}.{contract.PROJECTS_TABLE} as p on p.id = s.project_id
    where {contract.project_is_live("p")}
        and not exists (
            select 1 from {_DETAILS} as d where d.session_id = s.id and d.session_updated_at = s.updated_at
        )
        and not exists (
            select 1 from {MISSES_TABLE} as m where m.session_id = s.id and m.session_updated_at = s.updated_at
        )
"""


def ensure_tables(con: Any) -> None:
    """The details tables (as the contract declares them, before dlt's first load makes them)
    and the misses table."""
    warehouse = as_warehouse(con)
    for statement in contract.raw_tables_ddl((contract.PROJECTS, contract.SESSIONS, contract.DETAILS,
                                              contract.MESSAGES)).split(";\n"):
        if statement.strip():
            warehouse.execute(statement)
    warehouse.execute(f"create schema if not exists {settings.META_SCHEMA}")
    warehouse.execute(f"create table if not exists {MISSES_TABLE} (session_id bigint not null, "
                      "session_updated_at text, missed_at timestamptz not null)")


def awaiting(con: Any) -> list[tuple[int, str]]:
    """(session id, listed updated_at) of every session awaiting its detail, newest `updated_at`
    first (ties: the higher id first). Call ensure_tables first."""
    rows = as_warehouse(con).execute(f"select s.id, s.updated_at {_AWAITING}").fetchall()
    return sorted(rows, key=lambda row: (_instant(row[1]), row[0]), reverse=True)


def awaiting_count(con: Any) -> int | None:
    """How many sessions await their detail; None before any run stored sessions."""
    warehouse = as_warehouse(con)
    needed = ((_RAW, contract.SESSIONS_TABLE), (_RAW, contract.PROJECTS_TABLE), (_RAW, contract.DETAILS_TABLE),
              tuple(MISSES_TABLE.split(".")))
    if not all(warehouse.has_table(schema, table) for schema, table in needed):
        return None
    return warehouse.execute(f"select count(*) {_AWAITING}").fetchone()[0]


def record_misses(con: Any, misses: dict[int, str]) -> None:
    """The details that answered 404, for the updated_at they were asked for: not asked again
    until the session's updated_at changes."""
    if not misses:
        return
    warehouse = as_warehouse(con)
    now = datetime.now(timezone.utc)
    with warehouse.transaction():
        warehouse.execute(f"delete from {MISSES_TABLE} where session_id in (select unnest(cast(? as bigint[])))",
                          [list(misses)])
        warehouse.executemany(f"insert into {MISSES_TABLE} values (?, ?, ?)",
                              [(sid, updated_at, now) for sid, updated_at in misses.items()])


def tidy(con: Any, keep_text: bool) -> dict[str, int]:
    """After the night's loads: details, messages and misses of sessions no longer stored go
    (the listing removed them), and without `keep_text` every stored message's content is
    cleared. Returns the rows each step changed."""
    warehouse = as_warehouse(con)
    changed = {}
    with warehouse.transaction():
        for name, table in (("details", _DETAILS), ("messages", _MESSAGES), ("misses", MISSES_TABLE)):
            changed[name] = warehouse.changed_rows(
                # an anti-join both engines hash (PostgreSQL plans `not in (subquery)` as an
                # unhashed subplan past its default work_mem)
                f"delete from {table} where not exists (select 1 from {_SESSIONS} as s where s.id = {table}.session_id)")
        changed["text_cleared"] = 0 if keep_text else _clear_text(warehouse)
    return changed


def _clear_text(warehouse: Warehouse) -> int:
    return warehouse.changed_rows(f"update {_MESSAGES} set content = null where content is not null")


def _instant(text: Any) -> datetime:
    """A stored updated_at as an aware instant for ordering (a valid row's is always a
    timestamp; one without an offset is UTC, as staging reads it)."""
    try:
        instant = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return datetime.min.replace(tzinfo=timezone.utc)
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=timezone.utc)
