"""The dlt source `cekura`: projects, and every listed project's scenario-improvement sessions.

A project's listing is the unit of replacement. The sessions endpoint has no server-side filter
(and one incremental cursor shared by all projects skips rows, dlt #2429), so each project's
full list is read every night; a listing identical to the one already loaded writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from cekura_sessions import settings
from cekura_sessions.api import endpoints
from cekura_sessions.api.client import CekuraClient, RetryPolicy, describe_error
from cekura_sessions.api.errors import AuthError
from cekura_sessions.api.pages import Listing
from cekura_sessions.extract import contract, convert
from cekura_sessions.extract.batch import ListingBatch
from cekura_sessions.extract.report import RunReport
from cekura_sessions.extract.seen import SeenSessions
from cekura_sessions.run.stored import KnownListing, PreviousSessions

log = logging.getLogger(__name__)

FLUSH_ROWS = 20_000

_MERGE = {"disposition": "merge", "strategy": "delete-insert"}


def _replace_listed_projects(row_key: str) -> dict[str, str]:
    """Every loaded project's rows are replaced as a whole, and a session that moved to another
    project leaves its old one. Written as two IN lists: dlt's default for primary_key plus
    merge_key is one EXISTS with an OR, which DuckDB runs as a nested loop (a changed night
    at 200,000 sessions took minutes and GBs)."""
    return {
        **_MERGE,
        "destination_scope": (
            f"project_id IN (SELECT project_id FROM {{staging_table}})"
            f" OR {row_key} IN (SELECT {row_key} FROM {{staging_table}})"
        ),
    }


# the source never stages a session twice (seen_sessions.py), so dlt's merge inserts without
# its ROW_NUMBER() dedup window
_UNIQUE_IN_STAGING = {"x-stage-data-deduplicated": True}

_TOMBSTONE_HINT = {contract.TOMBSTONE_COLUMN: {"data_type": "bool", "hard_delete": True}}

# Each table the sessions resource writes carries its own complete hints, so no table inherits
# another's keys or marker column.
_TABLE_HINTS: dict[str, Any] = {
    contract.PROJECTS_TABLE: dlt.mark.make_hints(
        table_name=contract.PROJECTS_TABLE,
        write_disposition=_MERGE,
        primary_key="id",
    ),
    contract.SESSIONS_TABLE: dlt.mark.make_hints(
        table_name=contract.SESSIONS_TABLE,
        write_disposition=_replace_listed_projects("id"),
        primary_key="id",
        columns=_TOMBSTONE_HINT,
        additional_table_hints=_UNIQUE_IN_STAGING,
    ),
    contract.SCENARIO_IDS_TABLE: dlt.mark.make_hints(
        table_name=contract.SCENARIO_IDS_TABLE,
        write_disposition=_replace_listed_projects("session_id"),
        primary_key=["session_id", "position"],
        columns=_TOMBSTONE_HINT,
        additional_table_hints=_UNIQUE_IN_STAGING,
    ),
    contract.PROJECT_LISTINGS_TABLE: dlt.mark.make_hints(
        table_name=contract.PROJECT_LISTINGS_TABLE,
        write_disposition=_MERGE,
        primary_key="project_id",
    ),
    contract.REJECTED_ROWS_TABLE: dlt.mark.make_hints(
        table_name=contract.REJECTED_ROWS_TABLE,
        write_disposition="append",
        columns={"project_id": {"data_type": "bigint"}, "rejected_at": {"data_type": "timestamp"}},
    ),
}


@dlt.source(name="cekura", section="cekura", max_table_nesting=0)
def cekura(
    api_key: str = dlt.secrets.value,
    base_url: str = endpoints.DEFAULT_BASE_URL,
    project_ids: list[int] | None = None,
    concurrency: int = settings.DEFAULT_CONCURRENCY,
    retry: RetryPolicy | None = None,
    report: RunReport | None = None,
    known_listings: dict[int, KnownListing] | None = None,
    previous_sessions: PreviousSessions | None = None,
    known_projects: dict[int, tuple[Any, ...]] | None = None,
) -> DltResource:
    report = report or RunReport()
    client = CekuraClient(base_url, api_key, policy=retry, stats=report.stats, connections=max(1, concurrency))
    # the projects list only feeds the sessions resource, which loads it when it changed: a
    # night where nothing changed then loads nothing, and dlt skips its normalize and load
    # work (no-change night at M 0.9 s -> 0.75 s)
    return projects(client) | scenario_improvement_sessions(
        client, report, project_ids or None, max(1, concurrency), known_listings or {}, previous_sessions,
        known_projects or {},
    )


@dlt.resource(name="project_list", selected=False)
def projects(client: CekuraClient) -> Iterator[pa.Table]:
    """Every project the key can see, allow-listed columns only."""
    valid = [p for p in client.list_projects() if isinstance(p, dict) and contract.is_integer(p.get("id"))]
    yield convert.projects_table(valid)


@dlt.transformer(name=contract.SESSIONS_TABLE, write_disposition=_MERGE)
def scenario_improvement_sessions(
    listed_projects: pa.Table,
    client: CekuraClient,
    report: RunReport,
    project_ids: list[int] | None,
    concurrency: int,
    known_listings: dict[int, KnownListing],
    previous_sessions: PreviousSessions | None,
    known_projects: dict[int, tuple[Any, ...]],
) -> Iterator[Any]:
    """The projects (when they changed), each listed project's sessions with the scenario-id
    child table, the listings' fingerprints and any rejected rows, as Arrow tables flushed
    every FLUSH_ROWS sessions."""
    if not _as_stored(listed_projects, known_projects):
        yield _to_table(contract.PROJECTS_TABLE, listed_projects)
    wanted = list(dict.fromkeys(project_ids or _active_project_ids(listed_projects)))  # each listed once
    report.projects_wanted = len(wanted)
    batch = ListingBatch(report, SeenSessions(), previous_sessions)
    for project_id, fetched, error in _fetch_listings(client, wanted, concurrency, known_listings):
        if fetched is None:
            report.projects_failed[project_id] = error
            continue
        batch.add(project_id, fetched, known_listings.get(project_id))
        if batch.pending_rows >= FLUSH_ROWS:
            yield from _flushed(batch)
    yield from _flushed(batch)
    if batch.rejected:
        yield _to_table(contract.REJECTED_ROWS_TABLE, batch.rejected)
    if batch.listings:
        yield _to_table(contract.PROJECT_LISTINGS_TABLE, pa.Table.from_pylist(batch.listings, schema=convert.PROJECT_LISTINGS_SCHEMA))
    report.new_fields = batch.extra_fields
    if report.new_fields:
        log.info("sessions carry fields the spec does not list, loaded as new columns: %s",
                 ", ".join(sorted(report.new_fields)))


def _as_stored(listed_projects: pa.Table, known_projects: dict[int, tuple[Any, ...]]) -> bool:
    """Every listed project is stored exactly so: merging them would change nothing."""
    return bool(known_projects) and all(
        known_projects.get(row[0]) == row for row in zip(*listed_projects.to_pydict().values())
    )


def _active_project_ids(listed_projects: pa.Table) -> list[int]:
    ids = listed_projects.column("id").to_pylist()
    deleted = listed_projects.column("is_deleted").to_pylist()
    return [pid for pid, is_deleted in zip(ids, deleted) if not is_deleted]


def _flushed(batch: ListingBatch) -> Iterator[Any]:
    tables = batch.flush()
    if tables is not None:
        yield _to_table(contract.SESSIONS_TABLE, tables[0])
        yield _to_table(contract.SCENARIO_IDS_TABLE, tables[1])


def _to_table(table_name: str, item: Any) -> Any:
    return dlt.mark.with_hints(item, _TABLE_HINTS[table_name], create_table_variant=True)


def _fetch_listings(
    client: CekuraClient, project_ids: list[int], concurrency: int, known: dict[int, KnownListing]
) -> Iterator[tuple[int, Listing | None, str | None]]:
    """(project id, listing or None, error) for each project as it completes, with at most `concurrency`
    requests in flight and a bounded number of finished listings held in memory; a slow
    project does not hold up the others."""
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cekura-fetch") as pool:
        queue = iter(project_ids)
        running: dict[Future[Listing], int] = {}
        try:
            while True:
                for project_id in queue:
                    last = known.get(project_id)
                    running[pool.submit(
                        client.list_sessions, project_id, last and last.fingerprint, last.chain if last else ()
                    )] = project_id
                    if len(running) >= 2 * concurrency:
                        break
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield _result(running.pop(future), future)
        finally:
            for future in running:
                future.cancel()


def _result(project_id: int, future: Future[Listing]) -> tuple[int, Listing | None, str | None]:
    try:
        return project_id, future.result(), None
    except AuthError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of one project fails that project only
        log.warning("project %s failed: %s", project_id, describe_error(error))
        return project_id, None, describe_error(error)
