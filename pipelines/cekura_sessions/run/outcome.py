"""How a run ends: its exit code (exit_codes.py), what it did, and the one line people read."""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field

from dlt.common.configuration.exceptions import ConfigFieldMissingException

from cekura_sessions.api.errors import (
    ApiError,
    AuthError,
    Challenged,
    ConfigError,
    Unreachable,
    Untrusted,
    describe_error,
)
from cekura_sessions.extract import contract
from cekura_sessions.extract.report import RunReport
from cekura_sessions.logs import one_line
from cekura_sessions.models.checks import CheckResult

log = logging.getLogger(__name__)

@dataclass
class RunOutcome:
    exit_code: int
    report: RunReport
    message: str = ""
    model_rows: dict[str, int] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)


class FatalError(Exception):
    """Nothing could be loaded; the message says what to do."""


def problems(report: RunReport, checks: list[CheckResult], raw_schema: str = contract.RAW_SCHEMA) -> list[str]:
    """What makes the night partial, one line each; `raw_schema`: the dataset's raw schema, where
    rejected rows are set aside (--dataset)."""
    problems = []
    if report.projects_failed:
        problems.append(f"{len(report.projects_failed)} project(s) failed ({report.failed_summary()})")
    if report.rows_rejected:
        problems.append(
            f"{report.rows_rejected} session row(s) broke the API contract and were set aside in "
            f"{raw_schema}.{contract.REJECTED_ROWS_TABLE}"
        )
    problems += _drift_problems(report)
    failed_checks = [c.name for c in checks if not c.passed and c.severity == "error"]
    if failed_checks:
        problems.append(f"data check(s) failed: {', '.join(failed_checks)}")
    return problems


def _drift_problems(report: RunReport) -> list[str]:
    """What the API did that makes the night's data incomplete unless someone looks: the lines
    of an ignored filter, an unreadable projects list, and removals held (issue 19)."""
    found = []
    if report.filter_ignored:
        rows, listings = sum(report.filter_ignored.values()), len(report.filter_ignored)
        found.append(f"the API ignored project_id: {listings} project listing(s) held {rows} session row(s) of other "
                     "projects; none was counted under the project asked for")
    if report.projects_unreadable:
        found.append(f"{report.projects_unreadable} row(s) of the projects list had no readable id; no project was "
                     "taken for unlisted this night")
    if report.removals_held:
        counts = ", ".join(f"project {pid}: {held} of {stored}" for pid, (held, stored)
                           in sorted(report.removals_held.items()))
        found.append(f"removals held ({counts} stored sessions gone from the listing); they stay loaded: if they "
                     "are real, run again with --accept-removals")
    if report.unlistings_held:
        ids = ", ".join(map(str, report.unlistings_held))
        found.append(f"unlisting held: the projects list lost {len(report.unlistings_held)} of "
                     f"{report.projects_listed_before} listed projects ({ids}); they stay loaded: if they are gone, "
                     "run again with --accept-removals")
    return found


_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_FULL_WORDS = ("No space left on device", "File too large", "Disk quota exceeded")


def storage_full(error: BaseException) -> str | None:
    """The one line for a failure that a full disk (or a file size or quota limit) caused,
    anywhere in `error`'s chain (DuckDB, dlt and psycopg2 wrap the OSError or say it in words);
    None when it is something else."""
    seen: set[int] = set()
    current: BaseException | None = error
    found = None  # the innermost that says it: an outer wrapper's first line is only "step failed"
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        said = str(current)
        if (isinstance(current, OSError) and current.errno in _FULL_ERRNOS) or any(w in said for w in _FULL_WORDS):
            found = current
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    if found is None:
        return None
    line = next((ln.strip() for ln in str(found).splitlines() if any(w in ln for w in _FULL_WORDS)), one_line(found, first_only=True))
    return f"the disk is full, or a file may grow no larger ({line}); free space and run again"


def _root_cause(error: BaseException) -> BaseException:
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        # explicit causes only: an implicit __context__ is often a StopIteration of dlt's generators
        inner = getattr(error, "exception", None) or error.__cause__
        if inner is None:
            break
        if isinstance(error, (ApiError, ConfigError, ConfigFieldMissingException)):
            break
        error = inner
    return error


def fatal_message(error: BaseException, api: str | None, key_origin: str | None = None) -> str:
    """The one line for a run that loaded nothing. `api`: the base URL (None: dlt resolved it and
    only the error can name it); `key_origin`: where the key came from (None: not known)."""
    full = storage_full(error)
    if full is not None:
        return f"nothing loaded: {full}"
    cause = _root_cause(error)
    if isinstance(cause, ConfigFieldMissingException):
        return "no API key: set CEKURA_API_KEY (or api_key under [sources.cekura] in .dlt/secrets.toml)"
    where = f"the API at {api}" if api else "the API"
    if isinstance(cause, AuthError):
        check = key_origin or "CEKURA_API_KEY, or api_key under [sources.cekura] in .dlt/secrets.toml"
        return f"{where} refused the key {cause.said}; check the key in {check}"
    if isinstance(cause, Challenged):
        return (f"nothing loaded: a firewall or bot challenge stands in front of {where} ({cause.evidence}); "
                "no key gets past it and retrying will not help: ask the API's operator to allow this machine")
    if isinstance(cause, ConfigError):
        return str(cause)
    if isinstance(cause, (Unreachable, Untrusted)):  # its message names the URL, the proxy, and what to do
        return f"nothing loaded: listing projects failed: {describe_error(cause)}"
    if isinstance(cause, ApiError):
        at = f" at {api}" if api else ""
        return (f"nothing loaded: listing projects{at} failed ({describe_error(cause)}); check the base URL, "
                "and if it is right, try again later")
    step = getattr(error, "step", "load")
    log.debug("the %s step failed", step, exc_info=error)
    return f"nothing loaded: dlt's {step} step failed ({type(cause).__name__}: {one_line(cause, first_only=True)})"
