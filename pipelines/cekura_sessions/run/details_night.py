"""The details part of a night (issue 21), after the listings loaded: which sessions await their
detail (run/details_state.py), how many the budget allows, reading them through the listings'
client (extract/details.py), loading them through dlt, then the clean-up and the 404s recorded.

Budget: `--details-budget N` (or `details_budget` in [sources.cekura]) is a number of detail
requests; by default, what the night's time budget (RetryPolicy.time_budget_seconds) has left at
the throttle's rate as learned, and no limit while no throttle is known. What the budget leaves
waits for the next nights, newest `updated_at` first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import dlt
import pyarrow as pa

from cekura_sessions import settings
from cekura_sessions.api.errors import ConfigError
from cekura_sessions.api.retry import RetryPolicy
from cekura_sessions.destination.database import Database
from cekura_sessions.extract.details import DetailsReport, default_budget, details_resource
from cekura_sessions.extract.report import RunReport
from cekura_sessions.run import details_state
from cekura_sessions.run.dlt_pipeline import load_waiting, make_pipeline, prune_loaded_packages

log = logging.getLogger(__name__)

ALL_MISSING_AT_LEAST = 3  # fewer 404s than this say nothing about the server


@dataclass(frozen=True)
class DetailsConfig:
    """`enabled`: read details at all (--no-details: False); `budget`: detail requests allowed
    (None: the default above); `keep_text`: store messages' content (--conversation-text)."""

    enabled: bool = True
    budget: int | None = None
    keep_text: bool = False


def resolve(enabled: bool | None, budget: int | None, keep_text: bool | None) -> DetailsConfig:
    """The command line's values, else [sources.cekura]'s `details`, `details_budget` and
    `conversation_text` (dlt's config and SOURCES__CEKURA__* variables), else the defaults.
    Raises ConfigError for a budget that is not a whole number >= 0."""
    if enabled is None:
        enabled = _flag(dlt.config.get("sources.cekura.details"), "details", True)
    if keep_text is None:
        keep_text = _flag(dlt.config.get("sources.cekura.conversation_text"), "conversation_text", False)
    if budget is None:
        budget = _budget(dlt.config.get("sources.cekura.details_budget"))
    return DetailsConfig(enabled, budget, keep_text)


def read_details(database: Database, pipelines_dir: str | None, report: RunReport, config: DetailsConfig,
                 policy: RetryPolicy, concurrency: int | None) -> DetailsReport:
    """Read, load and tidy the night's details; returns what was done (also `report.details`).
    Raises what dlt's load raises, and FatalApiError (a refused key)."""
    details = DetailsReport(skipped=not config.enabled)
    report.details = details
    with database.connect() as con:
        details_state.ensure_tables(con)
        due = details_state.awaiting(con) if config.enabled and report.client is not None else []
        # nothing to read: tidied now, where a second open of the file would cost as much again
        tidied = None if due else details_state.tidy(con, config.keep_text)
    details.waiting = len(due)
    if due:
        details.budget = config.budget if config.budget is not None else default_budget(
            report.pacer, policy.time_budget_seconds, report.started_at)
        chosen = due if details.budget is None else due[: details.budget]
        if chosen:
            database.let_go()  # not held while the requests wait on the network
            _load(database, pipelines_dir, report, chosen, config.keep_text, concurrency)
    if tidied is None:
        with database.connect() as con:
            details_state.record_misses(con, details.missing)
            tidied = details_state.tidy(con, config.keep_text)
    if tidied["text_cleared"]:
        log.info("cleared the text of %d stored message(s): this night was not given --conversation-text",
                 tidied["text_cleared"])
    log.info("details: %d read, %d answered 404, %d not read once their retries ran out, %d still waiting",
             details.read, len(details.missing), len(details.failed), details.left)
    return details


def _load(database: Database, pipelines_dir: str | None, report: RunReport, chosen: list[tuple[int, str]],
          keep_text: bool, concurrency: int | None) -> None:
    pipeline = make_pipeline(database, pipelines_dir)
    workers = max(1, concurrency or settings.DEFAULT_CONCURRENCY)
    pipeline.extract(details_resource(report.client, chosen, workers, keep_text, report.details),
                     loader_file_format="parquet")
    pa.default_memory_pool().release_unused()
    pipeline.normalize()
    database.keep_open()
    load_waiting(pipeline, database)
    prune_loaded_packages(pipeline)


def problems(report: RunReport) -> list[str]:
    """What makes the night partial: details whose retries ran out (their sessions wait); and
    the one line for a server where every detail asked answered 404."""
    details: DetailsReport | None = getattr(report, "details", None)
    if details is None:
        return []
    found = []
    if details.failed:
        found.append(f"{len(details.failed)} session detail(s) could not be read and wait for the next night "
                     f"(first: session {min(details.failed)}: {details.failed[min(details.failed)]})")
    if len(details.missing) >= ALL_MISSING_AT_LEAST and details.read == 0 and not details.failed:
        found.append(f"every session detail asked ({len(details.missing)}) answered 404: does {report.base_url} "
                     "serve GET /test_framework/v1/scenario-improvement-sessions/{id}/?")
    return found


def _flag(value: Any, name: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{name} in [sources.cekura] must be true or false, not {value!r}")


def _budget(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ConfigError(f"details_budget in [sources.cekura] must be a whole number of requests, not {value!r}; "
                      "check --details-budget")
