"""What a night learned of the API's throttle, kept in the database for the next night
(run/throttle_memory.py): on DuckDB and PostgreSQL alike, one row per base URL, never the key,
forgotten after REMEMBER_DAYS so a raised limit is learned again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
import pytest
from cekura_sessions.api.pacing import Throttle
from cekura_sessions.run import throttle_memory
from support import postgres

pytestmark = pytest.mark.e2e  # a real PostgreSQL for one of the engines

URL = "https://api.cekura.ai"


@pytest.fixture(params=["duckdb", "postgres"])
def con(request, tmp_path):
    if request.param == "duckdb":
        connection = duckdb.connect(str(tmp_path / "memory.duckdb"))
    else:
        connection = postgres.connect(request.getfixturevalue("pg_url"))
    yield connection
    connection.close()


def test_a_fresh_database_remembers_nothing(con):
    assert throttle_memory.remembered(con) == {}


def test_the_last_throttle_learned_per_base_url_is_remembered(con):
    throttle_memory.record(con, URL, Throttle(10, 1.0))
    throttle_memory.record(con, URL, Throttle(20, 60.0))  # a later night learned better
    throttle_memory.record(con, "http://127.0.0.1:8000", Throttle(3, 1.0))

    assert throttle_memory.remembered(con) == {URL: Throttle(20, 60.0), "http://127.0.0.1:8000": Throttle(3, 1.0)}


def test_a_throttle_learned_too_long_ago_is_forgotten(con):
    old = datetime.now(timezone.utc) - timedelta(days=throttle_memory.REMEMBER_DAYS, hours=1)
    throttle_memory.record(con, URL, Throttle(10, 1.0), now=old)

    assert throttle_memory.remembered(con) == {}
