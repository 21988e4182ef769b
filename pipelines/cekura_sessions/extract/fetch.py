"""One project's listing, fetched and, when it changed, read: runs in a fetch thread, so
Arrow's reading overlaps the main thread's work.

The client returns the answers' bytes and their digest; whether the listing changed is decided
here, against the digest stored by the last load, so an unchanged listing is never read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from cekura_sessions.api.client import CekuraClient
from cekura_sessions.extract import read


@dataclass
class FetchedListing:
    """`rows`: as extract/read.py read them (an Arrow table, or parsed JSON), or None when the
    answers are byte for byte the ones last loaded; `digest` of the answers' bytes; `sessions`
    listed."""

    rows: pa.Table | list[Any] | None = field(repr=False)
    digest: str
    sessions: int
    contents: tuple[bytes, ...] = field(repr=False, default=())

    @property
    def unchanged(self) -> bool:
        return self.rows is None

    def row(self, index: int) -> Any:
        """Row `index` as delivered (parsed JSON), for the rows set aside; Arrow-read answers
        are parsed into Python objects only when one is asked for."""
        if isinstance(self.rows, pa.Table):
            self.rows = read.python_rows(self.contents)
        return self.rows[index]


def fetch_listing(client: CekuraClient, project_id: int, known_digest: str | None) -> FetchedListing:
    """Raises what CekuraClient.list_sessions raises."""
    listing = client.list_sessions(project_id)
    if listing.digest == known_digest:
        return FetchedListing(None, listing.digest, listing.sessions)
    rows = read.read_rows(listing.contents)
    # counted as read, not as the check counted: a key given twice counts once, its last value
    sessions = rows.num_rows if isinstance(rows, pa.Table) else len(rows)
    return FetchedListing(rows, listing.digest, sessions, listing.contents)
