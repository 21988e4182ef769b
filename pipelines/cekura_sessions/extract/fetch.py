"""One project's listing, fetched and, when it changed, read: runs in a fetch thread, so
Arrow's reading overlaps the main thread's work.

The client returns the answers' bytes and their digest; whether the listing changed is decided
here, against the digest stored by the last load, so an unchanged listing is never read.

A listing of several pages is read over several requests while sessions are created and
deleted, and DRF pages a live query: a deletion on page 1 shifts a row of page 2 onto page 1,
where it is never read, and a creation shows one row twice. The client re-reads a listing whose
pages visibly disagree (`count`, a vanished page); what it cannot see, a stored session missing
or a row listed twice, is checked here, and the listing read again until two reads agree."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from cekura_sessions.api.client import CekuraClient, SessionListing
from cekura_sessions.api.errors import ProjectError
from cekura_sessions.extract import read
from cekura_sessions.extract.state import StoredIds

log = logging.getLogger(__name__)


@dataclass
class FetchedListing:
    """`rows`: as extract/read.py read them (an Arrow table, or parsed JSON), or None when the
    answers are byte for byte the ones last loaded; `digest` of the answers' bytes; `sessions`
    listed."""

    rows: pa.Table | list[Any] | None = field(repr=False)
    digest: str
    sessions: int
    contents: tuple[bytes, ...] = field(repr=False, default=())
    coerced: int = 0  # values whose type drifted and were put back (extract/drift.py)

    @property
    def unchanged(self) -> bool:
        return self.rows is None

    def row(self, index: int) -> Any:
        """Row `index` as delivered (parsed JSON), for the rows set aside; Arrow-read answers
        are parsed into Python objects only when one is asked for."""
        if isinstance(self.rows, pa.Table):
            self.rows = read.python_rows(self.contents)
        return self.rows[index]


def fetch_listing(
    client: CekuraClient, project_id: int, known_digest: str | None, stored_ids: StoredIds | None = None
) -> FetchedListing:
    """`stored_ids`: the project's stored session ids, asked for only when a changed listing
    came in several pages. Raises what CekuraClient.list_sessions raises, and ProjectError when
    a paged listing never reads the same twice (its stored rows are then kept)."""
    listing = client.list_sessions(project_id)
    if listing.digest == known_digest:
        return FetchedListing(None, listing.digest, listing.sessions)
    rows = read.read_rows(listing.contents)
    if listing.pages > 1:
        listing, rows = _settled(client, project_id, listing, rows, stored_ids)
        if listing.digest == known_digest:  # it moved back to what is stored
            return FetchedListing(None, listing.digest, listing.sessions)
    # counted as read, not as the check counted: a key given twice counts once, its last value
    sessions = rows.num_rows if isinstance(rows, pa.Table) else len(rows)
    return FetchedListing(rows, listing.digest, sessions, listing.contents, coerced=getattr(rows, "coerced", 0))


def _settled(
    client: CekuraClient, project_id: int, listing: SessionListing, rows: pa.Table | list[Any],
    stored_ids: StoredIds | None,
) -> tuple[SessionListing, pa.Table | list[Any]]:
    """A read of the listing that can be trusted: one that lists every stored session and no
    row twice, or one whose missing sessions the read before it also missed (a session leaves
    the database only when two reads agree) and whose repeats it repeated byte for byte."""
    stored = stored_ids(project_id) if stored_ids else np.empty(0, dtype=np.int64)
    reads, before, number = max(1, client.policy.listing_reads), None, 1
    while True:
        ids = read.row_ids(rows)
        repeated = len(np.unique(ids)) != len(ids)
        missing = np.setdiff1d(stored, ids)
        removals_agreed = not len(missing) or (before is not None and np.isin(missing, before[1]).all())
        repeats_agreed = not repeated or (before is not None and before[0] == listing.digest)
        if removals_agreed and repeats_agreed:
            return listing, rows
        doubt = (f"{len(missing)} stored session(s) missing, first {int(missing[0])}" if len(missing)
                 else "a session listed twice")
        if number == reads:
            raise ProjectError(f"the paged listing changed between every two of its {reads} reads ({doubt}); "
                               "its stored rows are kept")
        log.info("project %s: paged listing read %d of %d: %s; reading it again to agree before removing "
                 "anything", project_id, number, reads, doubt)
        before, number = (listing.digest, missing), number + 1
        listing = client.list_sessions(project_id)
        rows = read.read_rows(listing.contents)
