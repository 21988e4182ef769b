"""What one night needs to know of the earlier nights, read from the database before the
fetch (run/stored.py) and handed to the source as one object. Plain data: the source never
reads the database itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# (project id, session ids) -> those sessions as last stored, in the API's shape
StoredSessions = Callable[[int, list[int]], list[dict[str, Any]]]


class KnownListing(NamedTuple):
    digest: str  # of the answer bytes last loaded whole (api/client.py SessionListing.digest)
    sessions: int


@dataclass(frozen=True)
class NightState:
    """`listings`: each project's last loaded listing, so an unchanged one writes nothing;
    `projects`: each stored project's allow-listed columns, in contract.PROJECTS's order, so
    an unchanged projects list writes nothing; `stored_sessions`: the last good version of a
    session whose new version breaks the contract (looked up only for such rows)."""

    listings: dict[int, KnownListing] = field(default_factory=dict)
    projects: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    stored_sessions: StoredSessions | None = None
