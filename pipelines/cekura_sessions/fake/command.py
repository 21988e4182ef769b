"""`cekura-sessions fake-api`: serve generated data on loopback until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import faulthandler
import signal
import sys
import threading
import time
from datetime import date, datetime, timezone
from types import FrameType
from typing import Any

from cekura_sessions.api.endpoints import API_KEY_HEADER
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.faults import NAN_FIELD, NEXT_LINKS, Faults, validate_fault
from cekura_sessions.fake.moves import MOVES, validate_move
from cekura_sessions.fake.server import AUTH_STYLES, PAGINATIONS, FakeCekuraApi
from cekura_sessions.fake.throttle import HEADER_STYLES

DEFAULT_PORT = 8765
DEMO_API_KEY = "demo-key"


FAULTS_HELP = """\
FAULT (in --script, --project-fault and --fault-kinds) is one of:
  500, 502, 503, 408, 403, 404     that status with DRF's error body, as a proxy in front of the app answers
  429, 429:SECONDS, 429:http-date  throttled, Retry-After 1, SECONDS, or an HTTP date 1-2 s ahead
  drop                             the connection closed with no answer
  slow:SECONDS                     the answer after SECONDS
  trickle:SECONDS                  the body one byte at a time, SECONDS apart
  truncated                        the first half of the body (not JSON)
  html                             a gateway's HTML error page with status 200
  object                           a JSON object where the list belongs
  no_results                       a paging envelope without `results`
  bad_rows                         rows that break the contract, ahead of the real rows
  gzip_lie                         labelled Content-Encoding: gzip, sent plain
A request DRF's throttle refused draws no fault; one with a bad key keeps its 401 or 403 (only drop,
slow and trickle apply to it).

examples:
  cekura-sessions fake-api --page-size 50 --script sessions:101=503,429,truncated --script projects=drop
  cekura-sessions fake-api --fault-rate 0.2 --fault-kinds 502,slow:2,drop --fault-seed 3
  cekura-sessions fake-api --string-ids --hide-project 105 --empty-listing 101
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cekura-sessions fake-api``: every switch the fake has (fake/faults.py Faults,
    the server's paging, auth and throttle), and the FAULT names in the epilog."""
    parser.epilog = FAULTS_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    data = parser.add_argument_group("data")
    data.add_argument("--projects", type=int, default=DataSpec.projects, help="projects to generate")
    data.add_argument("--sessions-per-project", type=int, default=DataSpec.sessions_per_project,
                      help="sessions per project")
    data.add_argument("--seed", type=int, default=DataSpec.seed, help="data seed")
    add_as_of_argument(data)
    data.add_argument("--no-oddities", dest="oddities", action="store_false",
                      help="clean, uniform data: none of the spec's oddities (no deleted project, no odd values)")
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    server.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)")
    server.add_argument("--threads", type=int, default=32, metavar="N",
                        help="requests answered at once (default: 32)")
    server.add_argument("--api-key", default=DEMO_API_KEY, help=f"the key clients must send (default: {DEMO_API_KEY})")
    server.add_argument("--auth", choices=AUTH_STYLES, default="401",
                        help="how a bad or missing key is answered: 401 with a WWW-Authenticate challenge, or 403 "
                             "as DRF does when the authentication class sends none (default: 401)")
    server.add_argument("--page-size", type=int, default=None,
                        help="page the sessions list with DRF's paging class (--pagination) at this size "
                             "(default: the spec's plain arrays)")
    server.add_argument("--max-page-size", type=int, default=None, metavar="N",
                        help="with --page-size, let clients ask for pages of up to N (DRF's page_size_query_param "
                             "`page_size`, or `limit` up to N); default: a client's page size is ignored")
    server.add_argument("--pagination", choices=PAGINATIONS, default="page_number",
                        help="DRF paging class (with --page-size): page_number (`page`, 404 past the end), "
                             "limit_offset (`limit`, `offset`) or cursor (an opaque `cursor`, no `count`)")
    server.add_argument("--throttle", default=None, metavar="RATE",
                        help="DRF's own throttle, a sliding window per key: RATE like 10/s or 20/min; a refused "
                             "request answers 429 with DRF's Retry-After (its wait, rounded up)")
    server.add_argument("--throttle-headers", choices=HEADER_STYLES, default="none",
                        help="with --throttle, the rate-limit headers a gateway adds: ratelimit (RateLimit-Limit/"
                             "Remaining/Reset), x-ratelimit (X-RateLimit-*, Reset as a Unix time) or none (DRF's own)")
    faults = parser.add_argument_group("faults", "what a deployment adds around the API (FAULT: see below)")
    faults.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    faults.add_argument("--script", action="append", default=[], type=_script, metavar="WHERE=FAULT[,FAULT...]",
                        help="the next requests to WHERE answer these faults in order, then normally; WHERE: "
                             "projects, sessions:PROJECT_ID, details (any session's) or details:SESSION_ID "
                             "(repeatable)")
    faults.add_argument("--fail-project", type=int, action="append", default=[], metavar="ID",
                        help="project id whose sessions always answer 500 (repeatable)")
    faults.add_argument("--project-fault", action="append", default=[], type=_project_fault, metavar="ID:FAULT",
                        help="project id whose sessions always answer FAULT (repeatable)")
    faults.add_argument("--fault-rate", type=float, default=0.0, metavar="SHARE",
                        help="share of requests answered a fault drawn from --fault-kinds")
    faults.add_argument("--fault-kinds", type=_fault_list, default=Faults.random_kinds, metavar="FAULT[,FAULT...]",
                        help=f"what --fault-rate draws from (default: {','.join(Faults.random_kinds)})")
    faults.add_argument("--fault-seed", type=int, default=Faults.random_seed, metavar="N",
                        help=f"seed of the --fault-rate and --rate-limit-429 draws (default: {Faults.random_seed})")
    faults.add_argument("--rate-limit-429", type=float, default=0.0, metavar="SHARE",
                        help="share of requests answered 429 (Retry-After: 1)")
    faults.add_argument("--next-links", choices=NEXT_LINKS, default="absolute",
                        help="how paginated answers' `next` links look (with --page-size): absolute (DRF's own), "
                             "relative, self (a loop), internal-host (the app server's name behind a proxy)")
    faults.add_argument("--move-listing", action="append", default=[], type=_move, metavar="ID:MOVE",
                        help="after page 1 of project ID goes out, change its listing: "
                             f"{', '.join(MOVES)} (repeatable; each applies once, in order)")
    drift = parser.add_argument_group("drift", "what an API does to its bodies without a version change")
    drift.add_argument("--string-ids", action="store_true",
                       help='every `id` and `project` sent as a string ("42"), both endpoints')
    drift.add_argument("--nan-field", action="store_true",
                       help=f"every session gains a field the spec does not list, `{NAN_FIELD}`: a bare NaN")
    drift.add_argument("--ignore-project-filter", action="store_true",
                       help="the sessions list answers every project's sessions, whatever project_id asks")
    drift.add_argument("--raw-byte-title", type=int, action="append", default=[], metavar="ID",
                       help="project ID's first session title carries a raw 0xE9 byte (not UTF-8) (repeatable)")
    drift.add_argument("--empty-listing", type=int, action="append", default=[], metavar="ID",
                       help="project ID's sessions list answers an empty list (repeatable)")
    drift.add_argument("--hide-project", type=int, action="append", default=[], metavar="ID",
                       help="the projects list leaves project ID out (repeatable)")


_SCRIPT_PLACES = ("projects", "sessions:ID", "details", "details:ID")  # Faults.script's keys, as written


def _script(text: str) -> tuple[tuple[str, int | None], tuple[str, ...]]:
    where, equals, faults = text.partition("=")
    endpoint, colon, number = where.partition(":")
    if not equals or endpoint + (":ID" if colon else "") not in _SCRIPT_PLACES or (colon and not number.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r}: expected WHERE=FAULT[,FAULT...], WHERE one of "
                                         f"{', '.join(_SCRIPT_PLACES)}")
    return (endpoint, int(number) if colon else None), _fault_list(faults)


def _project_fault(text: str) -> tuple[int, str]:
    project, _, fault = text.partition(":")
    try:
        return int(project), validate_fault(fault)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ID:FAULT (the FAULTs are listed in --help)") from None


def _fault_list(text: str) -> tuple[str, ...]:
    try:
        return tuple(validate_fault(fault) for fault in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _move(text: str) -> tuple[int, str]:
    project, _, move = text.partition(":")
    try:
        return int(project), validate_move(move)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ID:MOVE, MOVE one of {', '.join(MOVES)}") from error


def add_as_of_argument(parser: argparse.ArgumentParser) -> None:
    """`--as-of YYYY-MM-DD`: the day the generated data is as of (`args.as_of`, a date; None: today)."""
    parser.add_argument("--as-of", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                        help="the day the data is as of: sessions are created over the 30 days before it "
                             "(default: today, UTC); the same day and seed give the same data")


def today_utc() -> date:
    return datetime.now(timezone.utc).date()


STOP_SECONDS = 15  # how long serve() may take to stop after Ctrl-C or SIGTERM


def serve(args: argparse.Namespace) -> int:
    """Serve generated data until Ctrl-C (or SIGTERM)."""
    dataset = generate(DataSpec(projects=args.projects, sessions_per_project=args.sessions_per_project, seed=args.seed,
                                as_of=args.as_of or today_utc(), oddities=args.oddities))
    try:
        faults = _faults(args)
    except ValueError as exc:  # a --throttle rate DRF would not read
        print(f"fake-api: {exc}", file=sys.stderr)
        return 2
    try:
        api = FakeCekuraApi(
            dataset, api_key=args.api_key, page_size=args.page_size, faults=faults, host=args.host, port=args.port,
            pagination=args.pagination, max_page_size=args.max_page_size, auth=args.auth, threads=args.threads,
        )
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    previous = _stop_on_sigterm()
    with api:
        try:  # from the banner on: a Ctrl-C right after it must stop cleanly too
            print(f"fake Cekura API at {api.url}  ({API_KEY_HEADER}: {args.api_key})  Ctrl-C stops it", flush=True)
            while True:
                # a second at a time: a Ctrl-C the kernel hands to one of the server's threads
                # interrupts no sleep of this one, and Python raises it here only at this thread's
                # next step (an hour's sleep would wait out the hour)
                time.sleep(1)
        except KeyboardInterrupt:
            # a stop takes about a second; one that hangs prints where every thread stands and exits 1
            faulthandler.dump_traceback_later(STOP_SECONDS, exit=True)
    faulthandler.cancel_dump_traceback_later()
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _moves(pairs: list[tuple[int, str]]) -> dict[int, list[str]]:
    moves: dict[int, list[str]] = {}
    for project_id, move in pairs:
        moves.setdefault(project_id, []).append(move)
    return moves


def _faults(args: argparse.Namespace) -> Faults:
    script: dict[tuple[str, int | None], list[str]] = {}
    for where, faults in args.script:
        script.setdefault(where, []).extend(faults)
    return Faults(
        script=script,
        always={**{pid: "500" for pid in args.fail_project}, **dict(args.project_fault)},
        random_rate=args.fault_rate,
        random_kinds=args.fault_kinds,
        random_seed=args.fault_seed,
        latency_ms=args.latency_ms,
        rate_limit_rate=args.rate_limit_429,
        next_links=args.next_links,
        throttle=args.throttle,
        throttle_headers=args.throttle_headers,
        moves=_moves(args.move_listing),
        string_ids=args.string_ids,
        raw_byte_projects=tuple(args.raw_byte_title),
        nan_field=args.nan_field,
        ignore_project_filter=args.ignore_project_filter,
        empty_listings=tuple(args.empty_listing),
        hidden_projects=tuple(args.hide_project),
    )


def _stop_on_sigterm() -> Any:
    """Make SIGTERM stop serve() like Ctrl-C; returns the previous handler (None off the main thread)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, interrupt)
