"""Listings on their way to dlt: what loads, what is set aside, and what each listing replaces.

A listing whose answer bytes equal the last loaded ones writes nothing (run/bookkeeping.py marks it
listed). Changed listings wait until FLUSH_ROWS sessions have gathered and are converted in
one go (extract/convert.py); then, per listing:
- a row that breaks the contract is set aside in rejected_rows with its reason; a session whose
  new version is set aside keeps its last good version, unless a listing of this run loads it
  (decided after the last listing, so it never depends on where a flush fell);
- a row whose session cannot be named (no integer id) is set aside, and the rest of its
  listing loads, but no stored session of that project is removed this night: the row might
  stand for any of them (without the stored ids to look up, the project fails and keeps what
  it had);
- a session id listed earlier in this run (in this listing or another) loads once, as first
  listed; the repeat is set aside (the merge relies on it: extract/hints.py);
- a row whose own `project` is another one (the API ignored `project_id`) is never counted
  under the project asked for: that project's own listing loads it when it is selected this
  night, else it is set aside (`project: null` counts under the project asked for);
- removals the guard holds (extract/removals.py) keep their last good version;
- a listing that ends with no rows to load clears its project (a tombstone row).
A listing with rows set aside, rows of other projects or removals held keeps no digest, so it
is read again, and reported, every night.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from cekura_sessions.extract import contract, convert
from cekura_sessions.extract.fetch import FetchedListing
from cekura_sessions.extract.removals import RemovalGuard
from cekura_sessions.extract.report import RunReport
from cekura_sessions.extract.seen import SeenSessions
from cekura_sessions.extract.state import StoredSessions

FLUSH_ROWS = 20_000


@dataclass
class _Outcome:
    """One changed listing's rows, decided."""

    project_id: int
    listing: FetchedListing
    loaded: np.ndarray  # indexes of its rows to load
    set_aside: list[tuple[Any, str]]  # (row as delivered, why)
    to_carry: list[int]  # ids whose last good version should load instead
    failed: bool = False  # a row without an id: the project keeps what it had
    strays: int = 0  # rows whose own project is another (the API ignored project_id)
    held: int = 0  # removals the guard held (their last good version is carried)
    doubt: bool = False  # a row set aside could be any session: no stored session is removed


class ListingBatch:
    def __init__(self, report: RunReport, seen: SeenSessions, stored_sessions: StoredSessions | None,
                 selected: set[int] | None = None, guard: RemovalGuard | None = None) -> None:
        """`selected`: the projects whose listings this night reads (a row of another project
        in a listing is left to that project's own listing when it is one of them); `guard`:
        what removals are held (None: none)."""
        self.report, self.seen, self.stored_sessions = report, seen, stored_sessions
        self.selected = selected or set()
        self.guard = guard
        self.pending: list[tuple[int, FetchedListing]] = []
        self.pending_rows = 0
        self.listings: list[dict[str, Any]] = []  # project_listings rows
        self.rejected: list[dict[str, Any]] = []
        self.to_carry: list[_Outcome] = []  # listings with a set-aside session stored before
        self.extra_fields: set[str] = set()  # fields the spec does not list, as flushed

    def add(self, project_id: int, fetched: FetchedListing) -> None:
        self.report.values_coerced += fetched.coerced
        if fetched.unchanged:
            self.report.projects_unchanged.append(project_id)
            self._listed(project_id, fetched.sessions, digest=None, write=False)
            return
        self.pending.append((project_id, fetched))
        self.pending_rows += fetched.sessions

    @property
    def full(self) -> bool:
        return self.pending_rows >= FLUSH_ROWS

    def flush(self) -> tuple[pa.Table, pa.Table] | None:
        """Convert what is pending; return its rows to load as (sessions, scenario ids) tables,
        or None when there is none."""
        pending, self.pending, self.pending_rows = self.pending, [], 0
        if not pending:
            return None
        sizes = [listing.sessions for _, listing in pending]
        starts = np.cumsum([0, *sizes])
        project_ids = np.repeat(np.array([p for p, _ in pending], dtype=np.int64), sizes)

        def raw_row(index: int) -> Any:  # row `index` of the batch, as delivered
            number = int(np.searchsorted(starts, index, side="right")) - 1
            return pending[number][1].row(index - int(starts[number]))

        columns = convert.listings_columns([listing.rows for _, listing in pending])
        converted = convert.convert(columns, project_ids, raw_row)
        ids = pc.fill_null(converted.sessions["id"], 0).to_numpy()
        own = pc.fill_null(converted.sessions["project"], 0).to_numpy()
        strays = (own != 0) & (own != project_ids)  # NULL (0 here) counts under the project asked for
        outcomes = self._decide(pending, raw_row, converted.reasons, ids, strays, own)
        keep = np.zeros(len(project_ids), dtype=bool)
        for outcome in outcomes:
            self._guard(outcome, ids)
            self._account(outcome)
            keep[outcome.loaded] = True
        self.seen.add(ids[keep], converted.sessions["project_id"].to_numpy()[keep])
        cleared = []
        for outcome in outcomes:
            if outcome.to_carry:  # decided once every listing of the run is in (finish)
                self.to_carry.append(outcome)
            elif not outcome.failed and not len(outcome.loaded):
                cleared.append(outcome.project_id)
        tables = [converted.select(keep)]
        if cleared:
            tables.append(convert.tombstones(cleared))
        return self._tables(tables)

    def finish(self) -> tuple[pa.Table, pa.Table] | None:
        """After the last flush: the last good version of each session whose new version was
        set aside, unless a listing of this run loads it (wherever it came in the run), and the
        tombstones of the listings left with nothing to load."""
        tables, cleared = [], []
        for outcome in self.to_carry:
            carried = self._carried(outcome)
            if carried is not None:
                tables.append(carried)
            elif not len(outcome.loaded):
                cleared.append(outcome.project_id)
        self.to_carry = []
        if cleared:
            tables.append(convert.tombstones(cleared))
        return self._tables(tables) if tables else None

    def _decide(self, pending: list[tuple[int, FetchedListing]], raw_row: Callable[[int], Any],
                reasons: dict[int, str], ids: np.ndarray, strays: np.ndarray, own: np.ndarray) -> list[_Outcome]:
        earlier = self.seen.first_listed_under(ids[~strays])
        if not reasons and not earlier and not strays.any() and len(np.unique(ids)) == len(ids):
            # the usual batch: every row loads (the loop below would decide the same, row by row)
            bounds = np.cumsum([0, *(listing.sessions for _, listing in pending)])
            return [_Outcome(project_id, listing, np.arange(bounds[n], bounds[n + 1]), [], [])
                    for n, (project_id, listing) in enumerate(pending)]
        outcomes, start = [], 0
        first_listed: dict[int, tuple[int, int]] = {}  # id -> (project, listing index) in this batch
        for number, (project_id, listing) in enumerate(pending):
            end = start + listing.sessions
            broken = [(raw_row(i), reasons[i]) for i in range(start, end) if i in reasons]
            doubt = any(not contract.is_identifiable(row) for row, _ in broken)
            if doubt and not self._can_keep_unlisted:
                outcomes.append(_Outcome(project_id, listing, np.empty(0, dtype=np.int64), broken, [], failed=True))
                start = end
                continue
            loaded, set_aside, taken, stray_rows = [], list(broken), set(), 0
            for i in range(start, end):
                if i in reasons:
                    continue
                session_id = int(ids[i])
                taken.add(session_id)
                if strays[i]:
                    stray_rows += 1
                    if int(own[i]) not in self.selected:
                        set_aside.append((raw_row(i), _stray(session_id, project_id, int(own[i]))))
                    continue
                why = _repeated(session_id, earlier.get(session_id), first_listed.get(session_id), number)
                if why:
                    set_aside.append((raw_row(i), why))
                else:
                    first_listed[session_id] = (project_id, number)
                    loaded.append(i)
            to_carry = sorted({row["id"] for row, _ in broken if contract.is_identifiable(row)} - taken)
            outcomes.append(_Outcome(project_id, listing, np.array(loaded, dtype=np.int64), set_aside, to_carry,
                                     strays=stray_rows, doubt=doubt))
            start = end
        return outcomes

    @property
    def _can_keep_unlisted(self) -> bool:
        """Whether a project's stored ids can be looked up, so a listing with a row that names
        no session can load while every stored session it lacks is kept."""
        return self.guard is not None and self.guard.stored_ids is not None

    def _guard(self, outcome: _Outcome, ids: np.ndarray) -> None:
        """Hold the outcome's removals when the guard says they are too many, or all of them
        when a row set aside names no session (it could be any of them): their last good
        version is carried instead (so they stay in raw and in the models)."""
        if self.guard is None or outcome.failed:
            return
        listed = np.union1d(ids[outcome.loaded], np.array(outcome.to_carry, dtype=np.int64))
        if outcome.doubt and self.guard.stored_ids is not None:
            kept = np.setdiff1d(self.guard.stored_ids(outcome.project_id), listed)
            outcome.to_carry = sorted({*outcome.to_carry, *kept.tolist()})
            return
        held = self.guard.held_sessions(outcome.project_id, listed)
        if len(held):
            outcome.to_carry = sorted({*outcome.to_carry, *held.tolist()})
            outcome.held = len(held)
            stored = (self.guard.stored_counts or {}).get(outcome.project_id, 0)
            self.report.removals_held[outcome.project_id] = (len(held), stored)

    def _account(self, outcome: _Outcome) -> None:
        report, project_id = self.report, outcome.project_id
        self.rejected.extend(_rejected_row(report.run_id, project_id, row, why, report.started_at)
                             for row, why in outcome.set_aside)
        report.rows_rejected += len(outcome.set_aside)
        if outcome.failed:
            report.projects_failed[project_id] = "rows without an integer id (see rejected_rows); its rows were kept"
            return
        report.sessions_written += len(outcome.loaded)
        if outcome.strays:
            report.filter_ignored[project_id] = outcome.strays
        # never remembered with rows set aside, another project's rows or removals held: the
        # listing is read again, and reported, every night
        digest = None if outcome.set_aside or outcome.strays or outcome.held else outcome.listing.digest
        self._listed(project_id, outcome.listing.sessions, digest, write=True)

    def _carried(self, outcome: _Outcome) -> tuple[pa.Table, pa.Table] | None:
        """The last good version of the sessions whose new version was set aside, unless this
        run lists them elsewhere."""
        stored = self.stored_sessions(outcome.project_id, outcome.to_carry) if self.stored_sessions else []
        elsewhere = self.seen.first_listed_under(np.array([row["id"] for row in stored], dtype=np.int64))
        stored = [row for row in stored if row["id"] not in elsewhere]
        if not stored:
            return None
        converted = convert.convert_sessions(stored, np.full(len(stored), outcome.project_id, dtype=np.int64))
        keep = np.ones(len(stored), dtype=bool)
        keep[list(converted.reasons)] = False
        self.seen.add(np.array([row["id"] for row in stored], dtype=np.int64)[keep], outcome.project_id)
        return converted.select(keep)

    def _tables(self, tables: list[tuple[pa.Table, pa.Table]]) -> tuple[pa.Table, pa.Table] | None:
        # fields only some rows carry become columns that are NULL in the others
        sessions = pa.concat_tables([s for s, _ in tables], promote_options="default")
        sessions = _drop_empty_extra_columns(sessions)
        if not sessions.num_rows:
            return None
        self.extra_fields.update(set(sessions.column_names) - set(convert.SESSIONS_SCHEMA.names))
        return sessions, pa.concat_tables([ids for _, ids in tables])

    def _listed(self, project_id: int, sessions: int, digest: str | None, write: bool) -> None:
        """Count the listing as read; `write`: its project_listings row goes to dlt (an unchanged
        listing's stored row is marked listed after the load instead)."""
        report = self.report
        report.projects_ok.append(project_id)
        report.sessions_listed += sessions
        if write:
            self.listings.append({
                "project_id": project_id,
                "listing_digest": digest,
                "sessions_listed": sessions,
                "listed_at": report.started_at,
                "run_id": report.run_id,
            })


def _repeated(session_id: int, earlier_project: int | None, first: tuple[int, int] | None, number: int) -> str | None:
    """Why a valid row is a repeat, or None when this is the first listing of its id in the run."""
    if earlier_project is not None:
        return (f"session {session_id} was already listed under project {earlier_project} in this run; "
                "that row was loaded")
    if first is None:
        return None
    if first[1] == number:
        return f"session {session_id} appears more than once in this listing; the first row was loaded"
    return f"session {session_id} was already listed under project {first[0]} in this run; that row was loaded"


def _stray(session_id: int, asked: int, own: int) -> str:
    return (f"session {session_id} was listed for project {asked} but belongs to project {own}, which this run "
            "does not load (the API ignored project_id)")


def _drop_empty_extra_columns(sessions: pa.Table) -> pa.Table:
    """An unknown field seen only on rows set aside makes no column."""
    known = set(convert.SESSIONS_SCHEMA.names)
    empty = [name for name in sessions.column_names
             if name not in known and sessions[name].null_count == sessions.num_rows]
    return sessions.drop_columns(empty) if empty else sessions


def _rejected_row(run_id: str, project_id: int | None, row: Any, reason: str, at: datetime) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "project_id": project_id,
        "raw_json": orjson.dumps(row, default=str).decode(),
        "reason": reason,
        "rejected_at": at,
    }
