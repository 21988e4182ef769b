"""`cekura-sessions`: argument parsing and the messages people read. No pipeline logic here.

The parser is built from light modules only: each command imports what it runs (dlt, pyarrow,
DuckDB, Django) when it runs, so `--help`, `--version` and a usage error answer at once
(tests/test_cli_startup.py)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, NoReturn

from cekura_sessions import exit_codes, logs, settings
from cekura_sessions.api import endpoints
from cekura_sessions.api.endpoints import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from cekura_sessions.api.errors import ConfigError
from cekura_sessions.destination.address import password_of
from cekura_sessions.exit_codes import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_SIGINT

if TYPE_CHECKING:
    from cekura_sessions.run.outcome import RunOutcome

DESCRIPTION = """\
Copy your Cekura scenario-improvement sessions into a DuckDB file (or PostgreSQL), build completion-rate and
duration models from them, and check them: nightly from cron or systemd, one run at a time,
one line when something went wrong."""

CONFIGURATION = f"""\
configuration (environment variables; dlt's .dlt/secrets.toml [sources.cekura] works too):
  CEKURA_API_KEY      the API key (run refuses to start without one)
  CEKURA_BASE_URL     API root (default {endpoints.DEFAULT_BASE_URL})
  CEKURA_PROJECT_IDS  comma-separated project ids (default: every project the key can see)
  CEKURA_DB           a DuckDB file, or a postgresql:// URL (default {settings.DEFAULT_DB})
  CEKURA_DATASET      the dataset: its raw schema; a second organisation's key loads into one of its own
                      (default {settings.RAW_SCHEMA})"""

RUN_EXIT_CODES = textwrap.fill(f"exit codes of run: {exit_codes.help_text(exit_codes.RUN)}.", width=100)

EPILOG = f"""{CONFIGURATION}

{RUN_EXIT_CODES}
`cekura-sessions COMMAND --help` lists a command's options; README.md has the rest."""

STATUS_EPILOG = (f"exit codes: {exit_codes.help_text(exit_codes.STATUS)}. The last line says which, on stdout "
                 "when ok and on stderr otherwise.")

log = logging.getLogger("cekura_sessions")


class UsageError(Exception):
    """Bad configuration; the message says what to fix."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, like every other error (argparse's default prints the whole usage first)."""
        logs.say(f"{message} (see `{self.prog} --help`)", level="error")
        self.exit(EXIT_FATAL)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _replace_what_the_locale_cannot_encode()
    logs.set_format("json" if _asks_for_json(argv) else "text")
    logs.set_run_id(None)
    args = _parser().parse_args(argv)
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    if args.log_file:
        code = _logging_to_file(args)
    else:
        logs.setup_logging(args.log_level, args.log_format)
        code = _dispatch(args)
    if code in EXIT_INTERRUPTED and args.command == "run":
        from cekura_sessions.run import interrupt

        # after the one line (and --log-file's failure line): a fetch thread may still wait on
        # an answer, and the interpreter's exit would join it
        interrupt.exit_now(code)
    return code


def _replace_what_the_locale_cannot_encode() -> None:
    """Under a locale that is not UTF-8 (ISO-8859-1, or PYTHONIOENCODING=latin-1), a project
    named in Greek or Chinese would end `status` or the run's line with a UnicodeEncodeError;
    such characters are written as `?` instead."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)  # absent on a stream a test swapped in
        if reconfigure is not None and (getattr(stream, "encoding", "") or "").lower().replace("-", "") != "utf8":
            reconfigure(errors="replace")


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return args.handler(args)
    except (UsageError, ConfigError) as error:
        logs.say(str(error), level="error")
        return EXIT_FATAL
    except KeyboardInterrupt:
        logs.say("interrupted", level="error")
        return EXIT_SIGINT
    except Exception as error:
        # a bug or an environment problem: one line for people, the traceback for --log-level DEBUG
        log.debug("%s failed", args.command, exc_info=True)
        logs.say(f"unexpected {type(error).__name__}: {logs.one_line(error, first_only=True)} "
                 "(rerun with --log-level DEBUG for details)", level="error")
        return EXIT_FATAL


def _asks_for_json(argv: list[str]) -> bool:
    return "--log-format=json" in argv or any(a == "--log-format" and b == "json" for a, b in zip(argv, argv[1:]))


# --- the parser -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cekura-sessions", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_Version)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="the least severe log records shown (default INFO; DEBUG adds tracebacks)")
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="text (default), or json: every line the command writes is one JSON object "
                             "with time, level, logger, message and run_id")
    parser.add_argument("--log-file", metavar="PATH", default=os.environ.get("CEKURA_LOG_FILE") or None,
                        help="append everything the command writes to PATH instead (CEKURA_LOG_FILE); on a "
                             "non-zero exit write one line to stdout, which cron mails")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="the nightly job: extract, load, rebuild the models, run the checks",
                              description="The nightly job: list every project, load each project's sessions "
                                          "into the DuckDB file, rebuild the models and run the data checks.",
                              epilog=f"{CONFIGURATION}\n\n{RUN_EXIT_CODES}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_db(run)
    _add_dataset(run)
    run.add_argument("--base-url", metavar="URL",
                     help=f"API root (CEKURA_BASE_URL; default {endpoints.DEFAULT_BASE_URL})")
    run.add_argument("--project-id", type=str, action="append", dest="project_ids", metavar="N",
                     help="load only this project (repeatable; CEKURA_PROJECT_IDS)")
    run.add_argument("--no-models", action="store_true", help="load only; do not rebuild the models or run the checks")
    _add_drop_dependents(run)
    run.add_argument("--concurrency", type=_whole(1), default=None, metavar="N",
                     help=f"requests in flight at once (default {settings.DEFAULT_CONCURRENCY})")
    _add_page_size(run)
    run.add_argument("--accept-removals", action="store_true",
                     help="apply removals the guard holds: a project losing over half of its stored sessions "
                          "(and at least 20), or the projects list losing over half of its projects "
                          "(accept_removals in [sources.cekura]; thresholds removal_share, "
                          "removal_min_sessions, project_removal_share)")
    run.add_argument("--details-budget", type=_whole(0), default=None, metavar="N",
                     help="session details read at most this night, newest updated_at first; the rest wait for "
                          "the next nights (details_budget in [sources.cekura]; default: what the night's time "
                          "budget leaves at the API's throttle rate as learned, no limit while none is known)")
    run.add_argument("--no-details", action="store_true", default=None,
                     help="read no session details this night (details = false in [sources.cekura])")
    run.add_argument("--conversation-text", action="store_true", default=None,
                     help="store each message's text (content); it may hold customers' data. Without it the "
                          "text is never written, and text stored before is cleared "
                          "(conversation_text in [sources.cekura])")
    run.add_argument("--answer-deadline", type=_seconds(positive=True), default=None, metavar="SECONDS",
                     help=f"longest one answer may take, headers to last byte, before the attempt counts as "
                          f"timed out and is retried (default {endpoints.ANSWER_DEADLINE_SECONDS:g})")
    # a night has time: a reader (a dashboard polling the file) is waited out, never a failed night
    _add_db_wait(run, default=settings.RUN_DB_WAIT_SECONDS)
    run.set_defaults(handler=_run)

    probe = commands.add_parser("probe", help="check the key and the API without writing anything",
                                description="Ask the API what a night would meet, writing nothing (no database, no "
                                            "dlt folder): whether it accepts the key, the projects it sees and their "
                                            "sessions, its pagination and the page size it grants, its rate-limit "
                                            "headers, and the requests a night needs. Exit 0, or 2 with the line "
                                            "`run` would print.",
                                epilog=CONFIGURATION, formatter_class=argparse.RawDescriptionHelpFormatter)
    probe.add_argument("--base-url", metavar="URL",
                       help=f"API root (CEKURA_BASE_URL; default {endpoints.DEFAULT_BASE_URL})")
    probe.add_argument("--project-id", type=str, action="append", dest="project_ids", metavar="N",
                       help="probe only this project (repeatable; CEKURA_PROJECT_IDS)")
    _add_page_size(probe)
    _add_dataset(probe, "accepted as run takes it; probe writes nothing")
    probe.set_defaults(handler=_probe)

    demo = commands.add_parser("demo", help="the whole job against the bundled fake API into demo.duckdb",
                               description="Serve generated data from the bundled fake Cekura API on loopback, "
                                           "run the nightly job against it and print a short summary.")
    demo.add_argument("--db", default=settings.DEMO_DB, metavar="PATH", help="DuckDB file (default demo.duckdb)")
    _add_dataset(demo)
    demo.add_argument("--projects", type=_whole(1), default=12, metavar="N", help="projects to generate (default 12)")
    demo.add_argument("--sessions-per-project", type=_whole(0), default=150, metavar="N",
                      help="sessions per project (default 150)")
    demo.add_argument("--seed", type=int, default=7, metavar="N", help="seed of the generated data (default 7)")
    from cekura_sessions.fake import command as fake_command

    fake_command.add_as_of_argument(demo)
    _add_db_wait(demo)
    demo.set_defaults(handler=_with_fake_extra(_demo))

    models = commands.add_parser("models", help="rebuild the SQL models from what is loaded",
                                 description="Rebuild every model in schema analytics from the raw tables, in one "
                                             "transaction: on failure the previous models stay. Exit "
                                             f"{exit_codes.help_text(exit_codes.MODELS)}.")
    _add_db(models)
    _add_dataset(models)
    _add_db_wait(models)
    _add_drop_dependents(models)
    models.set_defaults(handler=_models)

    check = commands.add_parser("check", help="run the data checks; non-zero exit on a failed check",
                                description="Run the data checks on the models. Exit "
                                            f"{exit_codes.help_text(exit_codes.CHECK)}.")
    _add_db(check)
    _add_dataset(check)
    _add_db_wait(check)
    check.add_argument("--show", type=_whole(1), nargs="?", const=10, default=0, metavar="N",
                       help="print the offending rows of each check that did not pass, the first N (default 10)")
    check.set_defaults(handler=_check)

    status = commands.add_parser("status", help="recent runs, their outcome, and how fresh the data is",
                                 description="Recent runs, each project's last load, row counts, and one verdict "
                                             "line: ok, stale, partial, failed, locked or missing.",
                                 epilog=STATUS_EPILOG)
    _add_db(status)
    _add_dataset(status)
    _add_db_wait(status)
    status.add_argument("--max-age-hours", type=_hours, default=26.0, metavar="HOURS",
                        help="stale when no run loaded data within this many hours (default 26)")
    status.add_argument("--runs", type=_whole(0), default=10, metavar="N",
                        help="how many recent runs to list (default 10)")
    status.add_argument("--all", action="store_true", dest="all_projects",
                        help="list every listed project's last load, not only the stalest 5")
    status.set_defaults(handler=_status)

    fake = commands.add_parser("fake-api", help="serve the fake Cekura API on loopback",
                               description="Serve generated data as the Cekura API would, with fault switches, "
                                           "until Ctrl-C or SIGTERM.")
    fake_command.add_arguments(fake)
    fake.set_defaults(handler=_with_fake_extra(fake_command.serve))
    return parser


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="PATH_OR_URL",
                        help=f"a DuckDB file, or a postgresql://user:password@host:port/dbname URL with the postgres "
                             f"extra (CEKURA_DB; default {settings.DEFAULT_DB})")


def _add_dataset(parser: argparse.ArgumentParser, what: str = "") -> None:
    parser.add_argument("--dataset", metavar="NAME",
                        help=what or f"the dataset: dlt loads its raw schema NAME, and its models, staging and "
                                     f"bookkeeping live in NAME_analytics, NAME_analytics_staging and NAME_meta, so a "
                                     f"second organisation's key loads beside the first (CEKURA_DATASET; default "
                                     f"{settings.RAW_SCHEMA}, whose models are in analytics)")


def _add_drop_dependents(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drop-dependents", action="store_true",
                        help="PostgreSQL: when a model's columns were dropped, renamed or retyped, replace it even "
                             "though views of others depend on it, dropping them (without it the build stops and "
                             "names them; a model whose columns are unchanged is refreshed in place)")


def _add_page_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--page-size", type=_whole(1, MAX_PAGE_SIZE), default=None, metavar="N",
                        help=f"rows asked for per page of a listing, 1..{MAX_PAGE_SIZE} (page_size in [sources.cekura]; "
                             f"default {DEFAULT_PAGE_SIZE}); the API grants up to its own maximum")


def _add_db_wait(parser: argparse.ArgumentParser, default: float = 30.0) -> None:
    parser.add_argument("--db-wait", type=_seconds(positive=False), default=default, metavar="SECONDS",
                        help=f"how long each open of a DuckDB file waits while another program holds it, a "
                             f"notebook or a dashboard reading it (default {default:g})")


def _whole(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if maximum is not None and not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be a whole number from {minimum} to {maximum}, got {text!r}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {minimum}, got {text!r}")
        return value

    return parse


def _seconds(positive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (value > 0 if positive else value >= 0) or value == float("inf"):
            raise argparse.ArgumentTypeError(
                f"must be a number of seconds {'above' if positive else 'of at least'} 0, got {text!r}")
        return value

    return parse


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of hours above 0, got {text!r}")
    return value


class _Version(argparse.Action):
    """--version, reading the installed version only when asked: importlib.metadata imports
    email, zipfile and csv, which no other command needs before it starts."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the installed version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> NoReturn:
        sys.stdout.write(f"cekura-sessions {_version()}\n")
        parser.exit()


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("cekura-sessions")
    except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
        return "unknown (not installed)"


# --- --log-file -----------------------------------------------------------------------------------


def _logging_to_file(args: argparse.Namespace) -> int:
    """Everything the command writes goes to the file; cron mails stdout, so stdout gets one line
    only when the command exits non-zero."""
    path = Path(args.log_file)
    try:
        log_file = open(path, "a", encoding="utf-8", buffering=1)
    except OSError as error:
        logs.say(f"cannot write the log file {path} ({error.strerror}); create its folder or fix --log-file",
                 level="error")
        return EXIT_FATAL
    # what an exception escaping the command means: never "partial", which says data loaded
    code = EXIT_FATAL
    with _redirected(log_file) as stdout:
        _MailLine.stream, _MailLine.path = stdout, path  # a run that exits where it stands mails it too
        try:
            logs.setup_logging(args.log_level, args.log_format, dated=True)
            code = _dispatch(args)
        finally:
            _MailLine.stream = None
            if code != 0:
                stdout.write(_failure_line(args.command, code, path) + "\n")
                stdout.flush()
    try:
        log_file.close()
    except OSError:  # what a full disk kept in the buffer; the mailed line already went out
        pass
    return code


class _MailLine:
    """Under --log-file: the original stdout (cron mails it) and the log's path, for a run that
    the interrupt watchdog ends before _logging_to_file can write its failure line."""

    stream: IO[str] | None = None
    path: Path | None = None


@contextmanager
def _redirected(log_file: IO[str]) -> Iterator[IO[str]]:
    """Descriptors 1 and 2 point at the log file for the block, so C libraries and child
    processes write there too; yields a stream on the original stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    streams = sys.stdout, sys.stderr
    original = os.fdopen(os.dup(saved[1]), "w", encoding="utf-8")
    try:
        for fd in saved:
            os.dup2(log_file.fileno(), fd)
        sys.stdout = sys.stderr = log_file
        yield original
    finally:
        try:
            log_file.flush()
        except OSError:  # a full disk: the mailed line on the original stdout says what it can
            pass
        sys.stdout, sys.stderr = streams
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        original.close()


def _failure_line(command: str, code: int, path: Path) -> str:
    name = exit_codes.name_of(exit_codes.RUN, code) if command == "run" else None
    meaning = f", {name}" if name else ""
    run = f" {logs.current_run_id()}" if command == "run" and logs.current_run_id() else ""
    said = logs.one_line(logs.last_error() or "no message; see the log")
    lost = f"; the log is incomplete ({logs.output_lost()})" if logs.output_lost() else ""
    return f"cekura-sessions {command}{run} exited {code}{meaning}: {said}{lost} (log: {path})"


# --- the commands ---------------------------------------------------------------------------------


def _db(args: argparse.Namespace) -> str:
    """--db, else CEKURA_DB, else the default file: a DuckDB path or a postgresql:// URL."""
    value = args.db or os.environ.get("CEKURA_DB") or settings.DEFAULT_DB
    logs.register_secret(password_of(value))
    return value


def _dataset(args: argparse.Namespace) -> str:
    """--dataset, else CEKURA_DATASET, else the default dataset; checked (UsageError: one line)."""
    from cekura_sessions.destination.dataset import DatasetNameError, check_name

    name = (getattr(args, "dataset", None) or os.environ.get("CEKURA_DATASET") or settings.RAW_SCHEMA).strip()
    try:
        check_name(name)
    except DatasetNameError as error:
        raise UsageError(str(error)) from None
    return name


def _project_ids(args: argparse.Namespace) -> list[int] | None:
    raw = args.project_ids or [p for p in os.environ.get("CEKURA_PROJECT_IDS", "").split(",") if p.strip()]
    ids = []
    for value in raw:
        try:
            ids.append(int(value.strip()))
        except ValueError:
            raise UsageError(f"project ids must be whole numbers, got {value.strip()!r}; "
                             "fix --project-id or CEKURA_PROJECT_IDS") from None
        if ids[-1] < 1:  # Cekura's ids start at 1: a 0 or -5 is a typo, and would list nothing
            raise UsageError(f"project ids are positive, got {ids[-1]}; fix --project-id or CEKURA_PROJECT_IDS")
    return ids or None


def _run(args: argparse.Namespace) -> int:
    from cekura_sessions.api.retry import RetryPolicy
    from cekura_sessions.cli import api_config
    from cekura_sessions.cli.progress import Progress
    from cekura_sessions.extract.report import RunReport
    from cekura_sessions.run import night

    logs.register_secret(os.environ.get("CEKURA_API_KEY"))
    logs.register_secret(os.environ.get("SOURCES__CEKURA__API_KEY"))
    api_key = api_config.api_key()  # where it came from names what to fix in every message about it
    logs.register_secret(api_key.value)
    config = night.RunConfig(
        db=_db(args),
        dataset=_dataset(args),
        api_key=api_key.value,
        api_key_origin=api_key.origin,
        base_url=api_config.base_url(args.base_url).value,
        project_ids=_project_ids(args),
        build_models=not args.no_models,
        concurrency=args.concurrency,
        page_size=args.page_size,
        details=False if args.no_details else None,
        details_budget=args.details_budget,
        conversation_text=args.conversation_text,
        accept_removals=args.accept_removals,
        drop_dependents=args.drop_dependents,
        db_wait_seconds=args.db_wait,
        **({"retry": RetryPolicy(answer_deadline_seconds=args.answer_deadline)} if args.answer_deadline else {}),
    )
    started = time.monotonic()
    report = RunReport()
    logs.set_run_id(report.run_id)
    with Progress(report, enabled=sys.stderr.isatty()):
        outcome = night.run_stoppable(config, report, announce=_say_interrupted)
    _print_outcome(outcome, time.monotonic() - started)
    return outcome.exit_code  # main() exits at once after an interruption


def _probe(args: argparse.Namespace) -> int:
    from cekura_sessions.cli import api_config, probe

    _dataset(args)  # unused, but a name the night would refuse is said now, as run says it
    logs.register_secret(os.environ.get("CEKURA_API_KEY"))
    logs.register_secret(os.environ.get("SOURCES__CEKURA__API_KEY"))
    api_key = api_config.api_key()
    logs.register_secret(api_key.value)
    return probe.probe(api_config.base_url(args.base_url).value, api_key.value, api_key.origin, _project_ids(args),
                       args.page_size or DEFAULT_PAGE_SIZE)


def _say_interrupted(line: str, code: int) -> None:
    """The one line of a run stopped where it stood (run/interrupt.py's watchdog), on a line of
    its own even under the progress display; under --log-file also the failure line cron mails."""
    if sys.stderr.isatty():  # the progress line (cli/progress.py)
        sys.stderr.write("\r\033[K")
    logs.say(line, level="error", exit_code=code)
    if _MailLine.stream is not None and _MailLine.path is not None:
        _MailLine.stream.write(_failure_line("run", code, _MailLine.path) + "\n")
        _MailLine.stream.flush()


def _print_outcome(outcome: RunOutcome, seconds: float) -> None:
    report = outcome.report
    if outcome.exit_code in EXIT_INTERRUPTED:  # one line, nothing of a half-done night
        logs.say(outcome.message, level="error", exit_code=outcome.exit_code)
        return
    if outcome.exit_code == EXIT_OK or report.projects_ok:
        logs.say(
            f"run {report.run_id}: {len(report.projects_ok)} project(s) listed "
            f"({len(report.projects_unchanged)} unchanged), {report.sessions_listed} sessions listed, "
            f"{report.sessions_written} written, {len(report.projects_failed)} project(s) failed, "
            f"{report.stats.requests} requests ({report.stats.retries} retries), {seconds:.1f} s",
            exit_code=outcome.exit_code, projects_listed=len(report.projects_ok),
            projects_unchanged=len(report.projects_unchanged), projects_failed=len(report.projects_failed),
            sessions_listed=report.sessions_listed, sessions_written=report.sessions_written,
            requests=report.stats.requests, retries=report.stats.retries, seconds=round(seconds, 1),
        )
        details = report.details
        if details is not None and not details.skipped:
            logs.say(f"  details: {details.read} read, {len(details.missing)} answered 404, {len(details.failed)} "
                     f"failed, {details.left} waiting", details_read=details.read,
                     details_missing=len(details.missing), details_failed=len(details.failed),
                     details_waiting=details.left)
        for check in outcome.checks:
            if not check.passed:
                logs.say(f"  check {check.name} ({check.severity}): {check.offending_rows} offending row(s)",
                         level="warning", check=check.name, severity=check.severity,
                         offending_rows=check.offending_rows)
    if outcome.exit_code != EXIT_OK:
        logs.say(outcome.message, level="error", exit_code=outcome.exit_code)


def _with_fake_extra(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`demo` and `fake-api` serve the fake API, a Django REST framework app: without the `fake`
    extra they stop before anything starts, with one line naming it (exit 2)."""

    def checked(args: argparse.Namespace) -> int:
        from cekura_sessions.fake.app import FakeExtraMissing, require_fake_extra

        try:
            require_fake_extra()
        except FakeExtraMissing as missing:
            logs.say(f"{args.command}: {missing}", level="error", exit_code=EXIT_FATAL)
            return EXIT_FATAL
        return handler(args)

    return checked


def _demo(args: argparse.Namespace) -> int:
    from cekura_sessions.cli import demo
    from cekura_sessions.fake.command import today_utc

    return demo.run_demo(Path(args.db), args.projects, args.sessions_per_project, args.seed,
                         args.as_of or today_utc(), args.db_wait, _dataset(args))


def _models(args: argparse.Namespace) -> int:
    from cekura_sessions.cli import commands

    return commands.rebuild_models(_db(args), args.db_wait, args.drop_dependents, _dataset(args))


def _check(args: argparse.Namespace) -> int:
    from cekura_sessions.cli import commands

    return commands.check(_db(args), args.db_wait, args.show, _dataset(args))


def _status(args: argparse.Namespace) -> int:
    from cekura_sessions.cli import commands

    return commands.status(_db(args), args.db_wait, args.max_age_hours, args.runs, args.all_projects,
                           _dataset(args))
