"""What one run did, filled in by the source as it goes and read by the pipeline at the end."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cekura_sessions.api.pacing import Pacer, Throttle
from cekura_sessions.api.retry import RequestStats


@dataclass
class RunReport:
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    projects_wanted: int = 0
    projects_fetched: int = 0  # listings finished, loaded or failed: counted as each ends (the progress line)
    sessions_fetched: int = 0  # sessions in those listings
    projects_ok: list[int] = field(default_factory=list)
    projects_unchanged: list[int] = field(default_factory=list)
    projects_failed: dict[int, str] = field(default_factory=dict)
    sessions_listed: int = 0
    sessions_written: int = 0
    rows_rejected: int = 0
    new_fields: set[str] = field(default_factory=set)
    values_coerced: int = 0  # ids, counts, lists whose JSON type drifted, put back (extract/drift.py)
    projects_unreadable: int = 0  # project rows of the projects list that could not be read
    # project asked for -> rows its listing delivered for other projects (an ignored project_id)
    filter_ignored: dict[int, int] = field(default_factory=dict)
    # project -> (removals held, sessions stored live): the removal guard (extract/removals.py)
    removals_held: dict[int, tuple[int, int]] = field(default_factory=dict)
    unlistings_held: list[int] = field(default_factory=list)  # projects the guard kept listed
    projects_listed_before: int = 0  # listed projects stored, for the unlisting guard's line
    stats: RequestStats = field(default_factory=RequestStats)
    base_url: str = ""  # the API the night read, as the client checked it
    pacer: Pacer | None = field(default=None, repr=False)  # the client's: what it learned of the throttle
    client: Any = field(default=None, repr=False)  # the night's CekuraClient: its details are read through it
    details: Any = None  # extract/details.py DetailsReport, once the details part ran

    def listing_finished(self, sessions: int) -> None:
        """Count one project's listing as finished (`sessions`: 0 when it failed). Called by the
        one thread that collects the listings; other threads only read the counts."""
        self.projects_fetched += 1
        self.sessions_fetched += sessions

    @property
    def throttle_learned(self) -> Throttle | None:
        """The API's throttle as this night's answers said it (a 429, rate-limit headers); None
        when they said nothing (no throttle met, or paced from memory without a 429)."""
        return self.pacer.throttle if self.pacer is not None and self.pacer.taught else None

    def failed_summary(self) -> str:
        return "; ".join(f"project {pid}: {why}" for pid, why in sorted(self.projects_failed.items()))
