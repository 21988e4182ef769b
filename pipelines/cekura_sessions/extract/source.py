"""The dlt source `cekura`: projects, and every listed project's scenario-improvement sessions.

The sessions endpoint has no server-side filter (and one incremental cursor shared by all
projects skips rows, dlt #2429), so each project's full list is read every night; a listing
identical to the one already loaded writes nothing (extract/batch.py). How each table merges
is declared in extract/hints.py; what a valid row is, in extract/contract.py.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from typing import Any

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from cekura_sessions import settings
from cekura_sessions.api.client import CekuraClient
from cekura_sessions.api.endpoints import DEFAULT_BASE_URL
from cekura_sessions.api.errors import ConfigError, FatalApiError, describe_error
from cekura_sessions.api.endpoints import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from cekura_sessions.api.retry import RetryPolicy
from cekura_sessions.api.urls import check_base_url
from cekura_sessions.extract import contract, convert, drift
from cekura_sessions.extract.batch import ListingBatch
from cekura_sessions.extract.bounded import completed
from cekura_sessions.extract.fetch import FetchedListing, fetch_listing
from cekura_sessions.extract.hints import SESSIONS_RESOURCE_DISPOSITION, with_hints
from cekura_sessions.extract.never_stored import (
    is_never_stored,
    rejected_without_never_stored,
    without_never_stored,
)
from cekura_sessions.extract.organisation import check_organisation
from cekura_sessions.extract.projects import projects_table, with_unlisted
from cekura_sessions.extract.removals import RemovalGuard, removal_guard
from cekura_sessions.extract.report import RunReport
from cekura_sessions.extract.seen import SeenSessions
from cekura_sessions.extract.state import NightState

log = logging.getLogger(__name__)


@dlt.source(name="cekura", section="cekura", max_table_nesting=0)
def cekura(
    api_key: str = dlt.secrets.value,
    base_url: str = DEFAULT_BASE_URL,
    project_ids: list[int] | None = None,
    concurrency: int = settings.DEFAULT_CONCURRENCY,
    retry: RetryPolicy | None = None,
    report: RunReport | None = None,
    night: NightState | None = None,
    time_budget_seconds: float | None = None,
    page_size: int | None = None,
    # plain types: dlt resolves a union such as `bool | str` from no variable or file
    accept_removals: bool = False,
    removal_share: float | None = None,
    removal_min_sessions: int | None = None,
    project_removal_share: float | None = None,
) -> DltResource:
    """`night`: what earlier nights stored (run/stored.py reads it); None: a first night.
    `time_budget_seconds` (`[sources.cekura]`, SOURCES__CEKURA__TIME_BUDGET_SECONDS): how long
    a throttling API is waited out (RetryPolicy.time_budget_seconds when not set).
    `page_size` (`[sources.cekura]`, `run --page-size`): rows asked for per page, 1..1000
    (endpoints.DEFAULT_PAGE_SIZE when not set); ConfigError otherwise.
    `accept_removals` (`run --accept-removals`), `removal_share`, `removal_min_sessions`,
    `project_removal_share` (`[sources.cekura]`): the guard against sudden removals
    (extract/removals.py); ConfigError when one is out of range."""
    report = report or RunReport()
    guard = removal_guard(accept_removals, removal_share, removal_min_sessions, project_removal_share)
    if time_budget_seconds is not None:
        try:
            seconds = float(time_budget_seconds)
        except (TypeError, ValueError):
            raise ConfigError(f"the time budget must be a positive number of seconds, not {time_budget_seconds!r}; "
                              "check time_budget_seconds in [sources.cekura]") from None
        retry = dataclasses.replace(retry or RetryPolicy(), time_budget_seconds=seconds)
    night = night or NightState()
    # what an earlier night learned of this API's throttle: paced to from the first request
    remembered = night.throttles.get(check_base_url(base_url)) if night.throttles else None
    client = CekuraClient(base_url, api_key, policy=retry, stats=report.stats, connections=max(1, concurrency),
                          page_size=_page_size(page_size), throttle=remembered)
    report.base_url, report.pacer, report.client = client.base_url, client.gate, client
    # the projects list only feeds the sessions resource, which loads it when it changed: a
    # night where nothing changed then loads nothing, and dlt skips its normalize and load
    # work (no-change night at M 0.9 s -> 0.75 s)
    return projects(client, report) | scenario_improvement_sessions(
        client, report, project_ids or None, max(1, concurrency), night, guard
    )


def _page_size(value: Any) -> int:
    """`page_size` as given (an int, or a string from a variable), checked: 1..MAX_PAGE_SIZE."""
    if value is None:
        return DEFAULT_PAGE_SIZE
    size = 0
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and value.strip().isdigit():
        size = int(value.strip())
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ConfigError(f"the page size must be a whole number from 1 to {MAX_PAGE_SIZE}, not {value!r}; "
                          "check --page-size or page_size in [sources.cekura]")
    return size


@dlt.resource(name="project_list", selected=False)
def projects(client: CekuraClient, report: RunReport) -> Iterator[pa.Table]:
    """Every project the key can see, allow-listed columns only; ids sent as text read as the
    integers they hold (extract/drift.py); a row still without an integer id is counted in
    `report.projects_unreadable`, so no stored project is taken for unlisted this night."""
    rows = client.list_projects()
    report.values_coerced += sum(drift.coerce_project(p) for p in rows)
    valid = [p for p in rows if isinstance(p, dict) and contract.is_integer(p.get("id"))]
    report.projects_unreadable = len(rows) - len(valid)
    yield projects_table(valid)


@dlt.transformer(name=contract.SESSIONS_TABLE, write_disposition=SESSIONS_RESOURCE_DISPOSITION)
def scenario_improvement_sessions(
    listed_projects: pa.Table,
    client: CekuraClient,
    report: RunReport,
    project_ids: list[int] | None,
    concurrency: int,
    night: NightState,
    guard: RemovalGuard | None = None,
) -> Iterator[Any]:
    """The projects (when they changed), each listed project's sessions with the scenario-id
    child table, the listings' digests and any rejected rows, as Arrow tables flushed every
    batch.FLUSH_ROWS sessions."""
    check_organisation(listed_projects, night.projects, night.dataset)  # before anything is yielded
    guard = dataclasses.replace(guard or RemovalGuard(), stored_counts=night.stored_counts,
                                stored_ids=night.stored_ids)
    known_projects = with_unlisted(listed_projects, night.projects, report, guard)
    if not _as_stored(known_projects, night.projects):
        yield with_hints(contract.PROJECTS_TABLE, known_projects)
    wanted = list(dict.fromkeys(project_ids or _active_project_ids(listed_projects)))  # each listed once
    report.projects_wanted = len(wanted)
    batch = ListingBatch(report, SeenSessions(), night.stored_sessions, set(wanted), guard)
    for project_id, fetched, error in _fetch_listings(client, wanted, concurrency, night):
        report.listing_finished(fetched.sessions if fetched is not None else 0)
        if fetched is None:
            report.projects_failed[project_id] = error
            continue
        batch.add(project_id, fetched)
        if batch.full:
            yield from _flushed(batch)
    yield from _flushed(batch)
    yield from _flushed(batch, final=True)
    if batch.rejected:
        # few rows: dlt's own normalizer; as delivered, less what is never stored
        yield with_hints(contract.REJECTED_ROWS_TABLE, rejected_without_never_stored(batch.rejected))
    if batch.listings:
        yield with_hints(contract.PROJECT_LISTINGS_TABLE, pa.Table.from_pylist(batch.listings, schema=convert.PROJECT_LISTINGS_SCHEMA))
    report.new_fields = {name for name in batch.extra_fields if not is_never_stored(name)}
    if report.values_coerced:
        log.warning("%d id(s) or list(s) came as text holding integers (the API changed their JSON type) and were "
                    "loaded as the integers they hold", report.values_coerced)
    if report.new_fields:
        log.info("sessions carry fields the spec does not list, loaded as new columns: %s",
                 ", ".join(sorted(report.new_fields)))


def _as_stored(known_projects: pa.Table, stored_projects: dict[int, tuple[Any, ...]]) -> bool:
    """Every project is stored exactly so: merging them would change nothing."""
    return bool(stored_projects) and all(
        stored_projects.get(row[0]) == row for row in zip(*known_projects.to_pydict().values())
    )


def _active_project_ids(listed_projects: pa.Table) -> list[int]:
    ids = listed_projects.column("id").to_pylist()
    deleted = listed_projects.column("is_deleted").to_pylist()
    return [pid for pid, is_deleted in zip(ids, deleted) if not is_deleted]


def _flushed(batch: ListingBatch, final: bool = False) -> Iterator[Any]:
    tables = batch.finish() if final else batch.flush()
    if tables is not None:
        # a listing that starts sending a session's conversation must not store it (issue 21)
        yield with_hints(contract.SESSIONS_TABLE, without_never_stored(tables[0]))
        yield with_hints(contract.SCENARIO_IDS_TABLE, tables[1])


def _fetch_listings(
    client: CekuraClient, project_ids: list[int], concurrency: int, night: NightState
) -> Iterator[tuple[int, FetchedListing | None, str | None]]:
    """(project id, listing or None, error) for each project as it completes, with at most
    `concurrency` requests in flight and a bounded number of finished listings held in memory;
    a slow project does not hold up the others."""
    def fetch(project_id: int) -> FetchedListing:
        return fetch_listing(client, project_id, night.listing_digests.get(project_id), night.stored_ids)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cekura-fetch") as pool:
        # closed before the pool's shutdown: the fetches not started are cancelled, not waited for
        with closing(completed(pool, fetch, project_ids, 2 * concurrency)) as fetched:
            for project_id, future in fetched:
                yield _result(project_id, future)


def _result(project_id: int, future: Future[FetchedListing]) -> tuple[int, FetchedListing | None, str | None]:
    try:
        return project_id, future.result(), None
    except FatalApiError:  # a refused key, a firewall's challenge, an untrusted certificate: the run stops
        raise
    except Exception as error:  # noqa: BLE001 - any failure of one project fails that project only
        log.warning("project %s failed: %s", project_id, describe_error(error))
        return project_id, None, describe_error(error)
