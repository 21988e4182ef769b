"""Reads what earlier runs stored, for the next extract: listing fingerprints and the last good
version of sessions whose new version is rejected."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import duckdb
import orjson

from cekura_sessions.api.pages import PageChain
from cekura_sessions.extract import contract, convert

_RAW = contract.RAW_SCHEMA

# (project id, session ids) -> those sessions as last stored, in the API's shape
PreviousSessions = Callable[[int, list[int]], list[dict[str, Any]]]


class KnownListing(NamedTuple):
    fingerprint: str
    sessions: int
    chain: PageChain = ()  # paged listings: see listing.PageChain


def known_listings(con: duckdb.DuckDBPyConnection) -> dict[int, KnownListing]:
    """The fingerprint, size and page chain of each project's last loaded listing, read from
    the database itself, so a fresh or replaced database file always gets a full load."""
    table = f"{_RAW}.{contract.PROJECT_LISTINGS_TABLE}"
    try:
        columns = {name for (name,) in con.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
            [_RAW, contract.PROJECT_LISTINGS_TABLE],
        ).fetchall()}
        # page_chain came later: a database loaded before it has none
        chain = "page_chain" if "page_chain" in columns else "null"
        rows = con.execute(
            f"select project_id, listing_digest, sessions_listed, {chain} from {table} where listing_digest is not null"
        ).fetchall()
    except duckdb.CatalogException:
        return {}
    return {
        project_id: KnownListing(digest, sessions, tuple(map(tuple, orjson.loads(chain_json))) if chain_json else ())
        for project_id, digest, sessions, chain_json in rows
    }


def known_projects(con: duckdb.DuckDBPyConnection) -> dict[int, tuple[Any, ...]]:
    """Each stored project's allow-listed columns, in convert.PROJECTS_SCHEMA's order."""
    columns = ", ".join(convert.PROJECTS_SCHEMA.names)
    try:
        rows = con.execute(f"select {columns} from {_RAW}.{contract.PROJECTS_TABLE}").fetchall()
    except duckdb.Error:  # no table yet, or a column dlt has not created (never a value seen)
        return {}
    return {row[0]: row for row in rows}


class StoredSessions:
    """`(project id, session ids) -> sessions in the API's shape`, as last loaded."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def __call__(self, project_id: int, session_ids: list[int]) -> list[dict[str, Any]]:
        if not session_ids:
            return []
        cursor = self._con.cursor()  # the extract may call from another thread
        try:
            result = cursor.execute(
                f"""
                select
                    s.id, s.title, s.project, s.status, s.created_at, s.updated_at, s.message_count,
                    (
                        select list(c.value order by c.position)
                        from {_RAW}.{contract.SCENARIO_IDS_TABLE} as c
                        where c.session_id = s.id and c.project_id = s.project_id
                    ) as scenario_ids,
                from {_RAW}.{contract.SESSIONS_TABLE} as s
                where s.project_id = ? and s.id in (select unnest(?::bigint[]))
                """,
                [project_id, session_ids],
            )
            names = [column[0] for column in result.description]
            return [dict(zip(names, row)) for row in result.fetchall()]
        except duckdb.CatalogException:
            return []
        finally:
            cursor.close()
