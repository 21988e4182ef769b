"""`cekura-sessions`: argument parsing and the messages people read. No pipeline logic here."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cekura_sessions import logs, settings
from cekura_sessions.api import endpoints
from cekura_sessions.api.retry import RetryPolicy
from cekura_sessions.cli.progress import Progress
from cekura_sessions.run.night import RunConfig
from cekura_sessions.run.outcome import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_SIGINT, RunOutcome

log = logging.getLogger("cekura_sessions")


class UsageError(Exception):
    """Bad configuration; the message says what to fix."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logs.setup_logging(args.log_level, args.log_format)
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"cekura-sessions: {error}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("cekura-sessions: interrupted", file=sys.stderr)
        return EXIT_SIGINT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cekura-sessions", description=__doc__)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="the nightly job: extract, load, rebuild models, run checks")
    _add_load_arguments(run)
    run.add_argument("--base-url", help=f"API root (CEKURA_BASE_URL; default {endpoints.DEFAULT_BASE_URL})")
    run.add_argument("--project-id", type=str, action="append", dest="project_ids", metavar="N",
                     help="load only this project (repeatable; CEKURA_PROJECT_IDS)")
    run.set_defaults(handler=_run)

    demo = commands.add_parser("demo", help="the whole job against the bundled fake API into demo.duckdb")
    demo.add_argument("--db", default=settings.DEMO_DB, help="DuckDB file (default demo.duckdb)")
    demo.add_argument("--projects", type=int, default=12)
    demo.add_argument("--sessions-per-project", type=int, default=150)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(handler=_demo)

    for name, help_text, handler in (
        ("models", "rebuild the SQL models from what is loaded", _models),
        ("check", "run the data checks; non-zero exit on a failed check", _check),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--db", help="DuckDB file (CEKURA_DB; default cekura.duckdb)")
        sub.set_defaults(handler=handler)

    status = commands.add_parser("status", help="recent runs, their outcome, and how fresh the data is")
    status.add_argument("--db", help="DuckDB file (CEKURA_DB; default cekura.duckdb)")
    status.add_argument("--max-age-hours", type=float, default=26.0,
                        help="exit 1 when the newest successful run is older than this (default 26)")
    status.add_argument("--runs", type=int, default=10, help="how many recent runs to list")
    status.set_defaults(handler=_status)

    fake = commands.add_parser("fake-api", help="serve the fake Cekura API on loopback")
    from cekura_sessions.fake import command as fake_command

    fake_command.add_arguments(fake)
    fake.set_defaults(handler=fake_command.serve)
    return parser


def _add_load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="DuckDB file (CEKURA_DB; default cekura.duckdb)")
    parser.add_argument("--no-models", action="store_true", help="load only; do not rebuild the models")
    parser.add_argument("--concurrency", type=int, default=None,
                        help=f"requests in flight at once (default {settings.DEFAULT_CONCURRENCY})")
    parser.add_argument("--answer-deadline", type=float, default=None, metavar="SECONDS",
                        help=f"longest one answer may take, headers to last byte, before the attempt counts as "
                             f"timed out and is retried (default {RetryPolicy.answer_deadline_seconds:g})")
    parser.add_argument("--db-wait", type=float, default=30.0, metavar="SECONDS",
                        help="how long to wait for a DuckDB file another program holds (default 30)")


def _db_path(args: argparse.Namespace) -> Path:
    return Path(args.db or os.environ.get("CEKURA_DB") or settings.DEFAULT_DB)


def _project_ids(args: argparse.Namespace) -> list[int] | None:
    raw = args.project_ids or [p for p in os.environ.get("CEKURA_PROJECT_IDS", "").split(",") if p.strip()]
    ids = []
    for value in raw:
        try:
            ids.append(int(value.strip()))
        except ValueError:
            raise UsageError(f"project ids must be whole numbers, got {value.strip()!r}; "
                             "fix --project-id or CEKURA_PROJECT_IDS") from None
    return ids or None


def _run(args: argparse.Namespace) -> int:
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.answer_deadline is not None and args.answer_deadline <= 0:
        raise UsageError("--answer-deadline must be a positive number of seconds")
    api_key = os.environ.get("CEKURA_API_KEY")
    logs.register_secret(api_key)
    logs.register_secret(os.environ.get("SOURCES__CEKURA__API_KEY"))
    if api_key is not None and not api_key.strip():
        raise UsageError("CEKURA_API_KEY is set but empty; set it to your Cekura API key")
    config = RunConfig(
        db_path=_db_path(args),
        api_key=api_key,
        base_url=args.base_url or os.environ.get("CEKURA_BASE_URL") or None,
        project_ids=_project_ids(args),
        build_models=not args.no_models,
        concurrency=args.concurrency,
        db_wait_seconds=args.db_wait,
        **({"retry": RetryPolicy(answer_deadline_seconds=args.answer_deadline)} if args.answer_deadline else {}),
    )
    from cekura_sessions.extract.report import RunReport
    from cekura_sessions.run import interrupt, night

    started = time.monotonic()
    report = RunReport()
    with Progress(report, enabled=sys.stderr.isatty()):
        outcome = night.run_stoppable(config, report, announce=_say_interrupted)
    _print_outcome(outcome, time.monotonic() - started)
    if outcome.exit_code in EXIT_INTERRUPTED:
        interrupt.exit_now(outcome.exit_code)  # a fetch thread may still wait on an answer
    return outcome.exit_code


def _say_interrupted(line: str) -> None:
    """The one line of a run stopped where it stood (run/interrupt.py's watchdog), on a line of
    its own even under the progress display."""
    erase = "\r\033[K" if sys.stderr.isatty() else ""  # the progress line (cli/progress.py)
    print(f"{erase}cekura-sessions: {line}", file=sys.stderr)


def _print_outcome(outcome: RunOutcome, seconds: float) -> None:
    report = outcome.report
    if outcome.exit_code in EXIT_INTERRUPTED:  # one line, nothing of a half-done night
        print(f"cekura-sessions: {outcome.message}", file=sys.stderr)
        return
    if outcome.exit_code == EXIT_OK or report.projects_ok:
        print(
            f"run {report.run_id}: {len(report.projects_ok)} project(s) listed "
            f"({len(report.projects_unchanged)} unchanged), {report.sessions_listed} sessions listed, "
            f"{report.sessions_written} written, {len(report.projects_failed)} project(s) failed, "
            f"{report.stats.requests} requests ({report.stats.retries} retries), {seconds:.1f} s"
        )
        for check in outcome.checks:
            if not check.passed:
                print(f"  check {check.name} ({check.severity}): {check.offending_rows} offending row(s)")
    if outcome.exit_code != EXIT_OK:
        print(f"cekura-sessions: {outcome.message}", file=sys.stderr)


def _demo(args: argparse.Namespace) -> int:
    from cekura_sessions.cli import demo

    return demo.run_demo(Path(args.db), args.projects, args.sessions_per_project, args.seed)


def _models(args: argparse.Namespace) -> int:
    from cekura_sessions.cli import commands

    return commands.rebuild_models(_db_path(args))


def _check(args: argparse.Namespace) -> int:
    from cekura_sessions.cli import commands

    return commands.check(_db_path(args))


def _status(args: argparse.Namespace) -> int:
    from cekura_sessions.cli import commands

    return commands.status(_db_path(args), args.max_age_hours, args.runs)


