"""Listings on their way to dlt: each changed listing goes through Arrow when it is plain
(arrow_listing.py), row by row when not (contract.py), and no session id goes twice.

Unchanged listings write nothing (freshness.py marks them listed); a listing with rows set
aside keeps no fingerprint, so it is read again, and reported, every night.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from cekura_sessions.api.client import describe_error
from cekura_sessions.api.errors import MalformedBody
from cekura_sessions.api.pages import Listing
from cekura_sessions.extract import arrow_listing, contract, convert
from cekura_sessions.extract.report import RunReport
from cekura_sessions.extract.seen import SeenSessions
from cekura_sessions.run.stored import KnownListing, PreviousSessions


class ListingBatch:
    """Listings on their way to dlt: changed ones wait in `pending` until FLUSH_ROWS sessions
    have gathered, then go through Arrow in one go (see arrow_listing.py)."""

    def __init__(self, report: RunReport, seen: SeenSessions, previous_sessions: PreviousSessions | None) -> None:
        self.report, self.seen, self.previous_sessions = report, seen, previous_sessions
        self.sessions = convert.SessionBatch()
        self.pending: list[tuple[int, Listing]] = []
        self.pending_rows = 0
        self.listings: list[dict[str, Any]] = []  # project_listings rows
        self.rejected: list[dict[str, Any]] = []
        self.extra_fields: set[str] = set()  # fields the spec does not list, as flushed

    def add(self, project_id: int, fetched: Listing, known: KnownListing | None) -> None:
        rows = fetched.rows
        if rows is None:  # the same answer as last time (the client did not even parse it)
            self._listed(project_id, known.sessions if known else 0, fetched, unchanged=True, known=known)
        elif not rows:  # an empty listing clears its project: row by row, with its marker row
            self._add_one(project_id, fetched, plain=None)
        else:
            self.pending.append((project_id, fetched))
            self.pending_rows += len(rows)

    def flush(self) -> tuple[pa.Table, pa.Table] | None:
        """Convert what is pending; return every queued row as (sessions, scenario ids) tables,
        or None when none is queued."""
        pending, self.pending, self.pending_rows = self.pending, [], 0
        plain = arrow_listing.plain_listing_tables([(project_id, listing.rows) for project_id, listing in pending])
        if plain is not None and self._claim(plain):
            self.sessions.add_tables(*plain)
            for project_id, listing in pending:
                self.report.sessions_written += len(listing.rows)
                self._listed(project_id, len(listing.rows), listing, unchanged=False)
        else:  # one listing at a time, to find the one that needs a closer look
            for project_id, listing in pending:
                self._add_one(project_id, listing, arrow_listing.plain_listing_tables([(project_id, listing.rows)]))
        if not len(self.sessions):
            return None
        tables = self.sessions.sessions_table(), self.sessions.scenario_ids_table()
        self.extra_fields.update(self.sessions.extra_fields)
        self.sessions = convert.SessionBatch()
        return tables

    def _claim(self, plain: tuple[pa.Table, pa.Table]) -> bool:
        """Record the tables' session ids as listed; False, recording nothing, when any of
        them was listed before in this run."""
        sessions = plain[0]
        ids = sessions["id"].to_numpy()
        if self.seen.first_listed_under(ids):
            return False
        self.seen.add(ids, sessions["project_id"].to_numpy())
        return True

    def _add_one(self, project_id: int, fetched: Listing, plain: tuple[pa.Table, pa.Table] | None) -> None:
        rows = fetched.rows
        if plain is not None and self._claim(plain):
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
                # never remembered: the listing is read again, and reported, every night
                self._listed(project_id, len(rows), None, unchanged=False)
                return
        self._listed(project_id, len(rows), fetched, unchanged=False)

    def _listed(
        self, project_id: int, sessions: int, fetched: Listing | None, unchanged: bool, known: KnownListing | None = None
    ) -> None:
        """Its project_listings row, unless the stored one says the same (freshness.py then
        marks it listed); `fetched` None: nothing of the listing is remembered."""
        report = self.report
        report.projects_ok.append(project_id)
        report.sessions_listed += sessions
        if unchanged:
            report.projects_unchanged.append(project_id)
            if known is not None and (known.fingerprint, known.sessions, known.chain) == (
                fetched.fingerprint, sessions, fetched.chain
            ):
                return
        self.listings.append({
            "project_id": project_id,
            "listing_digest": fetched.fingerprint if fetched else None,
            "page_chain": orjson.dumps(fetched.chain).decode() if fetched and fetched.chain else None,
            "sessions_listed": sessions,
            "listed_at": report.started_at,
            "run_id": report.run_id,
        })


def _add_row_by_row(
    batch: convert.SessionBatch,
    rejected: list[dict[str, Any]],
    report: RunReport,
    seen: SeenSessions,
    project_id: int,
    rows: list[Any],
    previous_sessions: PreviousSessions | None,
) -> int | None:
    """Queue the valid rows, set the others aside; the number set aside, or None when the
    project must keep what it has."""
    reasons = [(row, contract.session_rejection(row)) for row in rows]
    broken = [(row, reason) for row, reason in reasons if reason is not None]
    if any(not (isinstance(row, dict) and contract.is_integer(row.get("id"))) for row, _ in broken):
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
    rejected.extend(convert.rejected_row(report.run_id, project_id, row, why, report.started_at) for row, why in rows)
    report.rows_rejected += len(rows)
