"""Answers real servers give that the fake's generator does not: exact bytes served over a real
loopback socket, through the whole night into a DuckDB file."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import orjson
import pytest
from cekura_sessions.api.endpoints import PROJECTS_PATH, SESSIONS_PATH
from cekura_sessions.api.endpoints import DEFAULT_PAGE_SIZE

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against a loopback server

# `project` null: the row counts under whichever listing serves it (a row naming another project
# is the ignored filter of issue 19, tested in test_drift.py)
ROW = {"id": 1, "title": "t", "project": None, "scenario_ids": [3], "status": "completed",
       "created_at": "2026-09-01T10:00:00Z", "updated_at": "2026-09-01T11:00:00Z", "message_count": 2}
PROJECTS = [{"id": 7, "name": "seven", "is_deleted": False}, {"id": 8, "name": "eight", "is_deleted": False}]


class _Raw(BaseHTTPRequestHandler):
    """Answers each path (query included) with the bytes given, as application/json."""

    answers: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = self.answers.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve():
    servers = []

    def start(answers: dict[str, bytes]) -> str:
        handler = type("Handler", (_Raw,), {"answers": {PROJECTS_PATH: orjson.dumps(PROJECTS), **answers}})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _sessions(project_id: int) -> str:
    """A listing's first request as the client sends it: the page size it asks for included."""
    return f"{SESSIONS_PATH}?project_id={project_id}&page_size={DEFAULT_PAGE_SIZE}"


def _loaded(db_path, columns="project_id, id, title"):
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(f"select {columns} from cekura_raw.scenario_improvement_sessions order by id").fetchall()


def test_an_integer_beyond_64_bits_in_an_unknown_field_loads(load, serve, db_path):
    big = b'[{"id": 1, "title": "t", "created_at": "2026-09-01T10:00:00Z", ' \
          b'"updated_at": "2026-09-01T11:00:00Z", "tracking": 123456789012345678901}]'
    url = serve({_sessions(7): big, _sessions(8): orjson.dumps([{**ROW, "id": 2}])})

    outcome = load(base_url=url, details=False)  # this server answers listings only

    assert outcome.exit_code == 0, outcome.message
    assert _loaded(db_path, "project_id, id, tracking") == [(7, 1, "1.2345678901234568e+20"), (8, 2, None)]


def test_two_projects_whose_unknown_fields_name_one_column_load_together(load, serve, db_path):
    url = serve({
        _sessions(7): orjson.dumps([{**ROW, "fooBar": "a"}]),
        _sessions(8): orjson.dumps([{**ROW, "id": 2, "foo_bar": "b"}]),
    })

    outcome = load(base_url=url, details=False)  # this server answers listings only

    assert outcome.exit_code == 0, outcome.message
    got = _loaded(db_path, "id, foo_bar, foo_bar_extra")
    # whichever project is converted first keeps the plain name; the other gets the suffix
    assert sorted(got) in ([(1, "a", None), (2, None, "b")], [(1, None, "a"), (2, "b", None)]), got


def test_a_page_that_gives_results_twice_loads_the_rows_json_readers_keep(load, serve, db_path):
    # JSON readers keep the last of a repeated key; the night must not count one and load another
    page = b'{"count": null, "next": null, "previous": null, "results": [' + orjson.dumps(ROW) + b'], ' \
           b'"results": [' + orjson.dumps({**ROW, "id": 3}) + b', ' + orjson.dumps({**ROW, "id": 4}) + b']}'
    url = serve({_sessions(7): page, _sessions(8): orjson.dumps([{**ROW, "id": 2}])})

    outcome = load(base_url=url, details=False)  # this server answers listings only

    assert outcome.exit_code == 0, outcome.message
    assert _loaded(db_path, "project_id, id") == [(8, 2), (7, 3), (7, 4)]


def test_a_next_that_is_not_a_link_fails_its_project_only(load, serve, db_path):
    url = serve({
        _sessions(7): orjson.dumps({"count": 1, "next": {"href": "?page=2"}, "previous": None, "results": [ROW]}),
        _sessions(8): orjson.dumps([{**ROW, "id": 2}]),
    })

    outcome = load(base_url=url, details=False)  # this server answers listings only

    assert outcome.exit_code == 1, outcome.message
    assert list(outcome.report.projects_failed) == [7]
    assert "`next` is not a link" in outcome.report.projects_failed[7]
    assert _loaded(db_path, "project_id, id") == [(8, 2)]


def test_a_title_cut_mid_emoji_loads_with_the_replacement_character(load, serve, db_path):
    """JavaScript producers cut strings inside a surrogate pair: `"\\ud83d"` alone (issue 12)."""
    cut = orjson.dumps([{**ROW, "title": "TITLE"}, {**ROW, "id": 3}]).replace(b"TITLE", b"launch \\ud83d")
    url = serve({_sessions(7): cut, _sessions(8): orjson.dumps([{**ROW, "id": 2}])})

    outcome = load(base_url=url, details=False)  # this server answers listings only

    assert outcome.exit_code == 0, outcome.message
    assert _loaded(db_path) == [(7, 1, "launch \ufffd"), (8, 2, "t"), (7, 3, "t")]
