"""What one night needs to know of the earlier nights, read from the database before the
fetch (run/stored.py) and handed to the source as one object. The source never opens the
database: the one lookup it may need, a set-aside session's last good version, is handed in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cekura_sessions import settings
from cekura_sessions.api.pacing import Throttle

# (project id, session ids) -> those sessions as last stored, in the API's shape
StoredSessions = Callable[[int, list[int]], list[dict[str, Any]]]
# project id -> the ids of its sessions as last stored (int64, sorted)
StoredIds = Callable[[int], np.ndarray]


@dataclass(frozen=True)
class NightState:
    """`listing_digests`: the digest of each project's answers as last loaded whole
    (api/client.py SessionListing.digest), so an unchanged listing writes nothing;
    `projects`: each stored project's allow-listed columns, in contract.PROJECTS's order, so
    an unchanged projects list writes nothing; `stored_sessions`: the last good version of a
    session whose new version breaks the contract (looked up only for such rows); `stored_ids`:
    each project's stored session ids, so a paged listing that lost some is read again before
    they are deleted (looked up only for changed listings of several pages); `throttles`: each
    base URL's API throttle as an earlier night learned it, so the client paces from its first
    request; `stored_counts`: each project's stored sessions, so a night that would remove most
    of them is held (extract/removals.py); `dataset`: the dataset loaded, whose stored projects
    tell its organisation (extract/organisation.py)."""

    listing_digests: dict[int, str] = field(default_factory=dict)
    projects: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    stored_sessions: StoredSessions | None = None
    stored_ids: StoredIds | None = None
    throttles: dict[str, Throttle] = field(default_factory=dict)
    # project id -> sessions stored for it (the removal guard's base, extract/removals.py)
    stored_counts: dict[int, int] = field(default_factory=dict)
    # the raw schema the night loads (--dataset), named when a key of another organisation is refused
    dataset: str = settings.RAW_SCHEMA
