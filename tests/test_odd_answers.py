"""Answers real servers give that the fake's generator does not: exact bytes served over a real
loopback socket, through the whole night into a DuckDB file."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import duckdb
import orjson
import pytest
from cekura_sessions.api.endpoints import DEFAULT_PAGE_SIZE, PROJECTS_PATH, SESSIONS_PATH
from support import nights

if TYPE_CHECKING:
    from cekura_sessions.run.night import RunOutcome

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against a loopback server

# `project` null: the row counts under whichever listing serves it (a row naming another project
# is the ignored filter of issue 19, tested in test_drift.py)
ROW = {"id": 1, "title": "t", "project": None, "scenario_ids": [3], "status": "completed",
       "created_at": "2026-09-01T10:00:00Z", "updated_at": "2026-09-01T11:00:00Z", "message_count": 2}


class _Raw(BaseHTTPRequestHandler):
    """Answers each path (query included) with the bytes given, as application/json."""

    answers: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = self.answers.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


def _sessions(project_id: int) -> str:
    """A listing's first request as the client sends it: the page size it asks for included."""
    return f"{SESSIONS_PATH}?project_id={project_id}&page_size={DEFAULT_PAGE_SIZE}"


def _start(listings: dict[int, bytes]) -> ThreadingHTTPServer:
    """A server listing the projects of `listings` (project -> the bytes its sessions' listing answers)."""
    projects = [{"id": project, "name": f"project {project}", "is_deleted": False} for project in listings]
    answers = {PROJECTS_PATH: orjson.dumps(projects), **{_sessions(p): body for p, body in listings.items()}}
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Raw,), {"answers": answers}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def _stop(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[dict[int, bytes]], str]]:
    """`serve(listings)`: the URL of a server of `listings`, for the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(listings: dict[int, bytes]) -> str:
        servers.append(_start(listings))
        return _url(servers[-1])

    yield start
    for server in servers:
        _stop(server)


def _loaded(db_path: Path, columns: str = "project_id, id, title", projects: list[int] | None = None) -> list[tuple]:
    """The sessions loaded (of `projects`, or all), by id."""
    where = "true" if projects is None else f"project_id in ({', '.join(map(str, projects))})"
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(
            f"select {columns} from cekura_raw.scenario_improvement_sessions where {where} order by id").fetchall()


# --- the answers that load, in one night ----------------------------------------------------------
# A night costs about half a second of CPU here, most of this module's. Each case below answers
# the listings of two projects of its own, with rows of ids of its own (`id` is the sessions'
# key), and the fields it is about are in no other case's rows: no case's answer can reach
# another's rows or columns. So the night that loads them is run once for the module, every
# case's listings served by one server (the failing case below keeps a night of its own: its
# project fails the night), and each case asserts its own projects' rows, and that the night
# loaded every case's projects and failed none.

BIG_INTEGER = {
    7: b'[{"id": 1, "title": "t", "created_at": "2026-09-01T10:00:00Z", '
       b'"updated_at": "2026-09-01T11:00:00Z", "tracking": 123456789012345678901}]',
    8: orjson.dumps([{**ROW, "id": 2}]),
}
ONE_COLUMN = {  # two spellings of one column name, each from a project of its own
    17: orjson.dumps([{**ROW, "id": 11, "fooBar": "a"}]),
    18: orjson.dumps([{**ROW, "id": 12, "foo_bar": "b"}]),
}
# JSON readers keep the last of a repeated key; the night must not count one and load another
RESULTS_TWICE = {
    27: b'{"count": null, "next": null, "previous": null, "results": [' + orjson.dumps({**ROW, "id": 21}) + b'], '
        b'"results": [' + orjson.dumps({**ROW, "id": 23}) + b', ' + orjson.dumps({**ROW, "id": 24}) + b']}',
    28: orjson.dumps([{**ROW, "id": 22}]),
}
CUT_EMOJI = {  # JavaScript producers cut strings inside a surrogate pair: `"\ud83d"` alone (issue 12)
    37: orjson.dumps([{**ROW, "id": 31, "title": "TITLE"}, {**ROW, "id": 33}]).replace(b"TITLE", b"launch \\ud83d"),
    38: orjson.dumps([{**ROW, "id": 32}]),
}
LOADING_CASES = [BIG_INTEGER, ONE_COLUMN, RESULTS_TWICE, CUT_EMOJI]


@dataclass(frozen=True)
class _Night:
    outcome: RunOutcome
    db_path: Path


@pytest.fixture(scope="module")
def loading_night(tmp_path_factory: pytest.TempPathFactory) -> _Night:
    """The night of every case of LOADING_CASES, as conftest.py's `load` runs one."""
    listings = {project: body for case in LOADING_CASES for project, body in case.items()}
    assert len(listings) == sum(len(case) for case in LOADING_CASES), "every case on projects of its own"
    folder = tmp_path_factory.mktemp("loading-night")
    server = _start(listings)
    try:
        outcome = nights.run(db=folder / "cekura.duckdb", base_url=_url(server),
                             pipelines_dir=str(folder / "pipelines"),
                             build_models=False, details=False)  # this server answers listings only
    finally:
        _stop(server)
    return _Night(outcome, folder / "cekura.duckdb")


def _case_rows(night: _Night, case: dict[int, bytes], columns: str) -> list[tuple]:
    """The rows the case's projects hold, after checking that the night loaded every case's
    projects and failed none (no case's answer got in another's way)."""
    assert night.outcome.exit_code == 0, night.outcome.message
    assert sorted(night.outcome.report.projects_ok) == sorted(p for c in LOADING_CASES for p in c)
    assert not night.outcome.report.projects_failed, night.outcome.report.projects_failed
    return _loaded(night.db_path, columns, sorted(case))


def test_an_integer_beyond_64_bits_in_an_unknown_field_loads(loading_night):
    got = _case_rows(loading_night, BIG_INTEGER, "project_id, id, tracking")

    assert got == [(7, 1, "1.2345678901234568e+20"), (8, 2, None)]


def test_two_projects_whose_unknown_fields_name_one_column_load_together(loading_night):
    got = _case_rows(loading_night, ONE_COLUMN, "id, foo_bar, foo_bar_extra")

    # whichever project is converted first keeps the plain name; the other gets the suffix
    assert sorted(got) in ([(11, "a", None), (12, None, "b")], [(11, None, "a"), (12, "b", None)]), got


def test_a_page_that_gives_results_twice_loads_the_rows_json_readers_keep(loading_night):
    got = _case_rows(loading_night, RESULTS_TWICE, "project_id, id")

    assert got == [(28, 22), (27, 23), (27, 24)]


def test_a_title_cut_mid_emoji_loads_with_the_replacement_character(loading_night):
    got = _case_rows(loading_night, CUT_EMOJI, "project_id, id, title")

    assert got == [(37, 31, "launch \ufffd"), (38, 32, "t"), (37, 33, "t")]


# --- an answer that fails its project ----------------------------------------------------------


def test_a_next_that_is_not_a_link_fails_its_project_only(load, serve, db_path):
    url = serve({
        7: orjson.dumps({"count": 1, "next": {"href": "?page=2"}, "previous": None, "results": [ROW]}),
        8: orjson.dumps([{**ROW, "id": 2}]),
    })

    outcome = load(base_url=url, details=False)  # this server answers listings only

    assert outcome.exit_code == 1, outcome.message
    assert list(outcome.report.projects_failed) == [7]
    assert "`next` is not a link" in outcome.report.projects_failed[7]
    assert _loaded(db_path, "project_id, id") == [(8, 2)]
