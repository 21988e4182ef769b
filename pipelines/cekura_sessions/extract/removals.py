"""The guard against sudden removals: a night that would remove most of a project's sessions,
or stop listing most projects, is more likely an API that answered wrong (an empty list from a
cache, a filter or a permission change) than a company deleting its data overnight. Such
removals are held, not applied: the rows stay in raw and in the models, the run exits 1 naming
the projects and counts, and a run given `--accept-removals` (or `accept_removals = true` in
`[sources.cekura]`) applies them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cekura_sessions.api.errors import ConfigError

DEFAULT_SHARE = 0.5  # removals above this share of a project's stored sessions are held...
DEFAULT_MIN_SESSIONS = 20  # ...when they are at least this many
DEFAULT_PROJECT_SHARE = 0.5  # unlisting above this share of the listed projects is held


@dataclass(frozen=True)
class RemovalGuard:
    """`accept`: apply every removal (the guard only counts). `share` (0..1) and `min_sessions`
    (>= 1): a project's removals are held when they exceed `share` of its stored sessions and
    number at least `min_sessions`. `project_share` (0..1): unlisting more than this share of
    the listed projects is held. `stored_counts`: project id -> stored sessions; `stored_ids`:
    project id -> its stored session ids (int64), asked only for a project the counts put in
    reach of the guard."""

    accept: bool = False
    share: float = DEFAULT_SHARE
    min_sessions: int = DEFAULT_MIN_SESSIONS
    project_share: float = DEFAULT_PROJECT_SHARE
    stored_counts: dict[int, int] | None = None
    stored_ids: Callable[[int], np.ndarray] | None = None

    def held_sessions(self, project_id: int, listed_ids: np.ndarray) -> np.ndarray:
        """The stored session ids of `project_id` whose removal is held (int64, sorted; empty
        when nothing is held): those `listed_ids` lacks, when they are too many."""
        stored = (self.stored_counts or {}).get(project_id, 0)
        if self.accept or self.stored_ids is None or stored < self.min_sessions:
            return np.empty(0, dtype=np.int64)
        removed = np.setdiff1d(self.stored_ids(project_id), listed_ids)
        if len(removed) >= self.min_sessions and len(removed) > self.share * stored:
            return removed
        return np.empty(0, dtype=np.int64)

    def unlisting_held(self, listed_before: int, unlisted: int) -> bool:
        """Whether stopping to list `unlisted` of `listed_before` listed projects is held."""
        return not self.accept and unlisted > 0 and unlisted > self.project_share * listed_before


def removal_guard(accept: object, share: object, min_sessions: object, project_share: object) -> RemovalGuard:
    """A RemovalGuard from configuration values as given (a bool, a number, or text from a
    variable); ConfigError naming the key when one is out of range."""
    return RemovalGuard(
        accept=_flag(accept),
        share=_fraction(share, "removal_share", DEFAULT_SHARE),
        min_sessions=_count(min_sessions),
        project_share=_fraction(project_share, "project_removal_share", DEFAULT_PROJECT_SHARE),
    )


def _flag(value: object) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"accept_removals must be true or false, not {value!r}; check [sources.cekura]")


def _fraction(value: object, key: str, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = -1.0
    if not 0 <= number <= 1 or isinstance(value, bool):
        raise ConfigError(f"{key} must be a share from 0 to 1, not {value!r}; check [sources.cekura]")
    return number


def _count(value: object) -> int:
    if value is None:
        return DEFAULT_MIN_SESSIONS
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ConfigError(f"removal_min_sessions must be a whole number of at least 1, not {value!r}; "
                          "check [sources.cekura]")
    return int(text)
