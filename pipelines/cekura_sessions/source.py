"""The dlt source `cekura`: projects, and every listed project's scenario-improvement sessions.

A project's listing is the unit of replacement. The sessions endpoint has no server-side filter
(and one incremental cursor shared by all projects skips rows, dlt #2429), so each project's
full list is read every night; a listing identical to the one already loaded writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import dlt
import numpy as np
import pyarrow as pa
from dlt.sources import DltResource

from cekura_sessions import arrow_listing, records, settings
from cekura_sessions.client import AuthError, CekuraClient, Listing, MalformedBody, RetryPolicy, describe_error
from cekura_sessions.run_report import RunReport
from cekura_sessions.seen_sessions import SeenSessions
from cekura_sessions.stored import KnownListing

log = logging.getLogger(__name__)

FLUSH_ROWS = 20_000

# (project id, session ids) -> those sessions as last stored, in the API's shape
PreviousSessions = Callable[[int, list[int]], list[dict[str, Any]]]

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

_TOMBSTONE_HINT = {settings.TOMBSTONE_COLUMN: {"data_type": "bool", "hard_delete": True}}

# Each table the sessions resource writes carries its own complete hints, so no table inherits
# another's keys or marker column.
_TABLE_HINTS: dict[str, Any] = {
    settings.SESSIONS_TABLE: dlt.mark.make_hints(
        table_name=settings.SESSIONS_TABLE,
        write_disposition=_replace_listed_projects("id"),
        primary_key="id",
        columns=_TOMBSTONE_HINT,
        additional_table_hints=_UNIQUE_IN_STAGING,
    ),
    settings.SCENARIO_IDS_TABLE: dlt.mark.make_hints(
        table_name=settings.SCENARIO_IDS_TABLE,
        write_disposition=_replace_listed_projects("session_id"),
        primary_key=["session_id", "position"],
        columns=_TOMBSTONE_HINT,
        additional_table_hints=_UNIQUE_IN_STAGING,
    ),
    settings.PROJECT_LISTINGS_TABLE: dlt.mark.make_hints(
        table_name=settings.PROJECT_LISTINGS_TABLE,
        write_disposition=_MERGE,
        primary_key="project_id",
    ),
    settings.REJECTED_ROWS_TABLE: dlt.mark.make_hints(
        table_name=settings.REJECTED_ROWS_TABLE,
        write_disposition="append",
        columns={"project_id": {"data_type": "bigint"}, "rejected_at": {"data_type": "timestamp"}},
    ),
}


@dlt.source(name="cekura", section="cekura", max_table_nesting=0)
def cekura(
    api_key: str = dlt.secrets.value,
    base_url: str = settings.DEFAULT_BASE_URL,
    project_ids: list[int] | None = None,
    concurrency: int = settings.DEFAULT_CONCURRENCY,
    retry: RetryPolicy | None = None,
    report: RunReport | None = None,
    known_listings: dict[int, KnownListing] | None = None,
    previous_sessions: PreviousSessions | None = None,
) -> tuple[DltResource, DltResource]:
    report = report or RunReport()
    client = CekuraClient(base_url, api_key, policy=retry, stats=report.stats, connections=max(1, concurrency))
    listed = projects(client)
    sessions = scenario_improvement_sessions(
        client, report, project_ids or None, max(1, concurrency), known_listings or {}, previous_sessions
    )
    return listed, listed | sessions


@dlt.resource(name=settings.PROJECTS_TABLE, primary_key="id", write_disposition=_MERGE)
def projects(client: CekuraClient) -> Iterator[pa.Table]:
    """Every project the key can see, allow-listed columns only."""
    valid = [p for p in client.list_projects() if isinstance(p, dict) and records.is_integer(p.get("id"))]
    yield records.projects_table(valid)


@dlt.transformer(name=settings.SESSIONS_TABLE, write_disposition=_MERGE)
def scenario_improvement_sessions(
    listed_projects: pa.Table,
    client: CekuraClient,
    report: RunReport,
    project_ids: list[int] | None,
    concurrency: int,
    known_listings: dict[int, KnownListing],
    previous_sessions: PreviousSessions | None,
) -> Iterator[Any]:
    """Each listed project's sessions, with the scenario-id child table, the listings'
    fingerprints and any rejected rows, as Arrow tables flushed every FLUSH_ROWS sessions."""
    wanted = list(dict.fromkeys(project_ids or _active_project_ids(listed_projects)))  # each listed once
    report.projects_wanted = len(wanted)
    batch = _Batch(report, SeenSessions(), previous_sessions)
    for project_id, fetched, error in _fetch_listings(client, wanted, concurrency, known_listings):
        if fetched is None:
            report.projects_failed[project_id] = error
            continue
        batch.add(project_id, fetched, known_listings.get(project_id))
        if batch.pending_rows >= FLUSH_ROWS:
            yield from batch.flush()
    yield from batch.flush()
    if batch.rejected:
        yield _to_table(settings.REJECTED_ROWS_TABLE, batch.rejected)
    if batch.listings:
        yield _to_table(settings.PROJECT_LISTINGS_TABLE, pa.Table.from_pylist(batch.listings, schema=records.PROJECT_LISTINGS_SCHEMA))
    report.new_fields = batch.extra_fields
    if report.new_fields:
        log.info("sessions carry fields the spec does not list, loaded as new columns: %s",
                 ", ".join(sorted(report.new_fields)))


def _active_project_ids(listed_projects: pa.Table) -> list[int]:
    ids = listed_projects.column("id").to_pylist()
    deleted = listed_projects.column("is_deleted").to_pylist()
    return [pid for pid, is_deleted in zip(ids, deleted) if not is_deleted]


class _Batch:
    """Listings on their way to dlt: changed ones wait in `pending` until FLUSH_ROWS sessions
    have gathered, then go through Arrow in one go (see arrow_listing.py)."""

    def __init__(self, report: RunReport, seen: SeenSessions, previous_sessions: PreviousSessions | None) -> None:
        self.report, self.seen, self.previous_sessions = report, seen, previous_sessions
        self.sessions = records.SessionBatch()
        self.pending: list[tuple[int, Listing]] = []
        self.pending_rows = 0
        self.listings: list[dict[str, Any]] = []  # project_listings rows
        self.rejected: list[dict[str, Any]] = []
        self.extra_fields: set[str] = set()  # fields the spec does not list, as flushed

    def add(self, project_id: int, fetched: Listing, known: KnownListing | None) -> None:
        rows, digest = fetched.rows, fetched.fingerprint
        if rows is None or (known is not None and digest == known.fingerprint):
            count = known.sessions if known is not None else len(rows or ())
            self._listed(project_id, count, digest, unchanged=True)
        elif not rows:  # an empty listing clears its project: row by row, with its marker row
            self._add_one(project_id, fetched, plain=None)
        else:
            self.pending.append((project_id, fetched))
            self.pending_rows += len(rows)

    def flush(self) -> Iterator[Any]:
        """Convert what is pending, then hand every queued row to dlt."""
        pending, self.pending, self.pending_rows = self.pending, [], 0
        plain = arrow_listing.plain_listing_tables([(project_id, listing.rows) for project_id, listing in pending])
        if plain is not None and self._all_new(plain):
            self.sessions.add_tables(*plain)
            for project_id, listing in pending:
                self.report.sessions_written += len(listing.rows)
                self._listed(project_id, len(listing.rows), listing.fingerprint, unchanged=False)
        else:  # one listing at a time, to find the one that needs a closer look
            for project_id, listing in pending:
                self._add_one(project_id, listing, arrow_listing.plain_listing_tables([(project_id, listing.rows)]))
        if len(self.sessions):
            yield _to_table(settings.SESSIONS_TABLE, self.sessions.sessions_table())
            yield _to_table(settings.SCENARIO_IDS_TABLE, self.sessions.scenario_ids_table())
            self.extra_fields.update(self.sessions.extra_fields)
            self.sessions = records.SessionBatch()

    def _all_new(self, plain: tuple[pa.Table, pa.Table]) -> bool:
        sessions = plain[0]
        ids = sessions["id"].to_numpy()
        if self.seen.first_listed_under(ids):
            return False
        self.seen.add(ids, sessions["project_id"].to_numpy())
        return True

    def _add_one(self, project_id: int, fetched: Listing, plain: tuple[pa.Table, pa.Table] | None) -> None:
        rows, digest = fetched.rows, fetched.fingerprint
        if plain is not None and self._all_new(plain):
            self.sessions.add_tables(*plain)
            self.report.sessions_written += len(rows)
        else:
            try:
                rows = fetched.python_rows()
            except MalformedBody as error:  # Arrow read it but orjson will not: never loaded half-read
                self.report.projects_failed[project_id] = describe_error(error)
                return
            rejected_count = _add_row_by_row(
                self.sessions, self.rejected, self.report, self.seen, project_id, rows, self.previous_sessions
            )
            if rejected_count is None:
                return
            if rejected_count:
                digest = None  # never remembered: the listing is read again, and reported, every night
        self._listed(project_id, len(rows), digest, unchanged=False)

    def _listed(self, project_id: int, sessions: int, digest: str | None, unchanged: bool) -> None:
        report = self.report
        report.projects_ok.append(project_id)
        report.sessions_listed += sessions
        if unchanged:
            report.projects_unchanged.append(project_id)
        self.listings.append({
            "project_id": project_id,
            "listing_digest": digest,
            "sessions_listed": sessions,
            "listed_at": report.started_at,
            "run_id": report.run_id,
        })


def _add_row_by_row(
    batch: records.SessionBatch,
    rejected: list[dict[str, Any]],
    report: RunReport,
    seen: SeenSessions,
    project_id: int,
    rows: list[Any],
    previous_sessions: PreviousSessions | None,
) -> int | None:
    """Queue the valid rows, set the others aside; the number set aside, or None when the
    project must keep what it has."""
    reasons = [(row, records.session_rejection(row)) for row in rows]
    broken = [(row, reason) for row, reason in reasons if reason is not None]
    if any(not (isinstance(row, dict) and records.is_integer(row.get("id"))) for row, _ in broken):
        _set_aside(rejected, report, project_id, broken)
        # a row we cannot identify could be any stored session: replacing the project's rows
        # might delete it, so the project keeps what it had, as if its listing had failed
        report.projects_failed[project_id] = "rows without an integer id (see rejected_rows); its rows were kept"
        return None
    valid, repeated = _split_repeated([row for row, reason in reasons if reason is None], seen)
    # a session whose new version breaks the contract keeps its last good version, unless a
    # good version of it is loaded in this run already
    taken = {row["id"] for row in valid} | {row["id"] for row, _ in repeated}
    to_carry = sorted({row["id"] for row, _ in broken} - taken)
    carried = previous_sessions(project_id, to_carry) if to_carry and previous_sessions else []
    if carried:
        elsewhere = seen.first_listed_under(np.array([row["id"] for row in carried], dtype=np.int64))
        carried = [row for row in carried if row["id"] not in elsewhere]
    _set_aside(rejected, report, project_id, broken + repeated)
    kept = valid + carried
    batch.add_sessions(project_id, kept)
    seen.add(np.array([row["id"] for row in kept], dtype=np.int64), project_id)
    if not kept:
        batch.add_tombstone(project_id)
    report.sessions_written += len(valid)
    return len(broken) + len(repeated)


def _split_repeated(
    rows: list[dict[str, Any]], seen: SeenSessions
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """(rows to load, rows set aside with why): an id listed before in this run, here or under
    another project, loads once, as first listed."""
    earlier = seen.first_listed_under(np.array([row["id"] for row in rows], dtype=np.int64))
    first: list[dict[str, Any]] = []
    repeated: list[tuple[dict[str, Any], str]] = []
    in_this_listing: set[int] = set()
    for row in rows:
        session_id = row["id"]
        if session_id in earlier:
            repeated.append((row, f"session {session_id} was already listed under project {earlier[session_id]} "
                                  "in this run; that row was loaded"))
        elif session_id in in_this_listing:
            repeated.append((row, f"session {session_id} appears more than once in this listing; the first row was loaded"))
        else:
            in_this_listing.add(session_id)
            first.append(row)
    return first, repeated


def _set_aside(
    rejected: list[dict[str, Any]], report: RunReport, project_id: int, rows: list[tuple[Any, str]]
) -> None:
    rejected.extend(records.rejected_row(report.run_id, project_id, row, why, report.started_at) for row, why in rows)
    report.rows_rejected += len(rows)


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
                    fingerprint = known[project_id].fingerprint if project_id in known else None
                    running[pool.submit(client.list_sessions, project_id, fingerprint)] = project_id
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
