"""`cekura-sessions fake-api`: serve generated data on loopback until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from datetime import date, datetime, timezone
from types import FrameType
from typing import Any

from cekura_sessions.api.endpoints import API_KEY_HEADER
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.faults import NEXT_LINKS, Faults
from cekura_sessions.fake.moves import MOVES, validate_move
from cekura_sessions.fake.server import AUTH_STYLES, PAGINATIONS, FakeCekuraApi
from cekura_sessions.fake.throttle import HEADER_STYLES

DEFAULT_PORT = 8765
DEMO_API_KEY = "demo-key"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cekura-sessions fake-api``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--projects", type=int, default=DataSpec.projects, help="projects to generate")
    parser.add_argument("--sessions-per-project", type=int, default=DataSpec.sessions_per_project, help="sessions per project")
    parser.add_argument("--seed", type=int, default=DataSpec.seed, help="data seed")
    add_as_of_argument(parser)
    parser.add_argument("--api-key", default=DEMO_API_KEY, help=f"the key clients must send (default: {DEMO_API_KEY})")
    parser.add_argument("--page-size", type=int, default=None,
                        help="page the sessions list with DRF's paging class (--pagination) at this size "
                             "(default: the spec's plain arrays)")
    parser.add_argument("--max-page-size", type=int, default=None, metavar="N",
                        help="with --page-size, let clients ask for pages of up to N (DRF's page_size_query_param "
                             "`page_size`, or `limit` up to N); default: a client's page size is ignored")
    parser.add_argument("--auth", choices=AUTH_STYLES, default="401",
                        help="how a bad or missing key is answered: 401 with a WWW-Authenticate challenge, or 403 "
                             "as DRF does when the authentication class sends none (default: 401)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests answered 500/502/503 or dropped")
    parser.add_argument(
        "--fail-project",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="project id whose sessions always answer 500 (repeatable)",
    )
    parser.add_argument(
        "--rate-limit-429", type=float, default=0.0, metavar="SHARE", help="share of requests answered 429 (Retry-After: 1)"
    )
    parser.add_argument("--throttle", default=None, metavar="RATE",
                        help="DRF's own throttle, a sliding window per key: RATE like 10/s or 20/min; a refused "
                             "request answers 429 with DRF's Retry-After (its wait, rounded up)")
    parser.add_argument("--throttle-headers", choices=HEADER_STYLES, default="none",
                        help="with --throttle, the rate-limit headers a gateway adds: ratelimit (RateLimit-Limit/"
                             "Remaining/Reset), x-ratelimit (X-RateLimit-*, Reset as a Unix time) or none (DRF's own)")
    parser.add_argument("--next-links", choices=NEXT_LINKS, default="absolute",
                        help="how paginated answers' `next` links look (with --page-size): absolute (DRF's own), "
                             "relative, self (a loop), internal-host (the app server's name behind a proxy)")
    parser.add_argument("--pagination", choices=PAGINATIONS, default="page_number",
                        help="DRF paging class (with --page-size): page_number (`page`, 404 past the end), "
                             "limit_offset (`limit`, `offset`) or cursor (an opaque `cursor`, no `count`)")
    parser.add_argument("--move-listing", action="append", default=[], type=_move, metavar="ID:MOVE",
                        help="after page 1 of project ID goes out, change its listing: "
                             f"{', '.join(MOVES)} (repeatable; each applies once, in order)")


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


def serve(args: argparse.Namespace) -> int:
    """Serve generated data until Ctrl-C (or SIGTERM)."""
    dataset = generate(DataSpec(projects=args.projects, sessions_per_project=args.sessions_per_project, seed=args.seed,
                                as_of=args.as_of or today_utc()))
    try:
        faults = _faults(args)
    except ValueError as exc:  # a --throttle rate DRF would not read
        print(f"fake-api: {exc}", file=sys.stderr)
        return 2
    try:
        api = FakeCekuraApi(
            dataset, api_key=args.api_key, page_size=args.page_size, faults=faults, host=args.host, port=args.port,
            pagination=args.pagination, max_page_size=args.max_page_size, auth=args.auth,
        )
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    previous = _stop_on_sigterm()
    with api:
        try:  # from the banner on: a Ctrl-C right after it must stop cleanly too
            print(f"fake Cekura API at {api.url}  ({API_KEY_HEADER}: {args.api_key})  Ctrl-C stops it", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _moves(pairs: list[tuple[int, str]]) -> dict[int, list[str]]:
    moves: dict[int, list[str]] = {}
    for project_id, move in pairs:
        moves.setdefault(project_id, []).append(move)
    return moves


def _faults(args: argparse.Namespace) -> Faults:
    return Faults(
        always={pid: "500" for pid in args.fail_project},
        random_rate=args.fault_rate,
        latency_ms=args.latency_ms,
        rate_limit_rate=args.rate_limit_429,
        next_links=args.next_links,
        throttle=args.throttle,
        throttle_headers=args.throttle_headers,
        moves=_moves(args.move_listing),
    )


def _stop_on_sigterm() -> Any:
    """Make SIGTERM stop serve() like Ctrl-C; returns the previous handler (None off the main thread)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, interrupt)
