"""Every command's exit codes and what each means, written once: the commands return them,
`--help` prints them (cli/main.py), and tests/test_readme.py checks README.md's tables against
them. Imports nothing, so `--help` stays light."""

from __future__ import annotations

from typing import NamedTuple


class ExitCode(NamedTuple):
    code: int
    name: str  # the word a line uses: the --log-file failure line of `run`, `status`'s verdict
    meaning: str  # what --help says


EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_FAILED = 1  # `models`: others' objects depend on a model it must replace; `check`: an error check failed
EXIT_FATAL = 2  # also every command's usage error and bad configuration
EXIT_LOCKED = 3
EXIT_SIGINT = 130  # interrupted: 128 + the signal's number, as shells report it
EXIT_SIGTERM = 143
EXIT_INTERRUPTED = (EXIT_SIGINT, EXIT_SIGTERM)

RUN = (
    ExitCode(EXIT_OK, "ok", "done"),
    ExitCode(EXIT_PARTIAL, "partial", "partial (some projects or a data check failed)"),
    ExitCode(EXIT_FATAL, "fatal", "nothing loaded"),
    ExitCode(EXIT_LOCKED, "locked", "another run or program holds the database"),
    ExitCode(EXIT_SIGINT, "interrupted", "interrupted by SIGINT"),
    ExitCode(EXIT_SIGTERM, "terminated", "interrupted by SIGTERM"),
)

MODELS = (
    ExitCode(EXIT_OK, "built", "built"),
    ExitCode(EXIT_FAILED, "dependents", "objects of others depend on a model that must be replaced"),
    ExitCode(EXIT_FATAL, "error", "cannot build"),
    ExitCode(EXIT_LOCKED, "locked", "the file (or a PostgreSQL lock) is held"),
)

CHECK = (
    ExitCode(EXIT_OK, "passed", "every error check passed"),
    ExitCode(EXIT_FAILED, "failed", "one failed"),
    ExitCode(EXIT_FATAL, "error", "cannot run"),
    ExitCode(EXIT_LOCKED, "locked", "the file is held"),
)

# `status` exits with one code per state, so a monitor tells them apart without reading the line
STATUS = (
    ExitCode(EXIT_OK, "ok", "ok (the newest run succeeded within --max-age-hours)"),
    ExitCode(1, "stale", "stale (no run loaded data within --max-age-hours, or none ever did)"),
    # a bad option, a file that is not a DuckDB database
    ExitCode(EXIT_FATAL, "error", "status could not read the file"),
    # a night is running (it holds the run lock), or a reader (a notebook) holds the file
    ExitCode(EXIT_LOCKED, "locked", "locked (a night is running, or another process holds the file past --db-wait)"),
    ExitCode(4, "partial", "partial (the newest run ended partial)"),
    ExitCode(5, "missing", "missing (no file at --db)"),
    # the newest run exited 2, 3, 130 or 143
    ExitCode(6, "failed", "failed (the newest run loaded nothing; older data is still within the limit)"),
    # killed, a crash, a power cut; no run is going now: the next run completes or discards what it left
    ExitCode(7, "unfinished", "unfinished (the newest run started and never finished)"),
)
STATUS_EXIT_CODES = {entry.name: entry.code for entry in STATUS}


def name_of(table: tuple[ExitCode, ...], code: int) -> str | None:
    return next((entry.name for entry in table if entry.code == code), None)


def help_text(table: tuple[ExitCode, ...]) -> str:
    """`0 done, 1 partial (...), ...`: the codes as --help lists them."""
    return ", ".join(f"{entry.code} {entry.meaning}" for entry in table)
