"""Shared fixtures: the fake Cekura API on a real loopback socket and a real DuckDB file per test.

Fixtures only (and the hook that orders the modules, support/schedule.py); what tests import lives
in support/. The pipeline (and with it dlt) is imported inside the fixture that runs it, so the
fast tests never load dlt.
"""

from __future__ import annotations

import os
import shutil
import tempfile

os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # before anything imports dlt, in every xdist worker
# The fake's next night empties one project of 30 sessions, which the guard against sudden
# removals holds (extract/removals.py): the tests of what a night applies accept removals; the
# guard's own tests (test_drift.py) set this to false.
os.environ["SOURCES__CEKURA__ACCEPT_REMOVALS"] = "true"

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cekura_sessions.fake.data import FakeDataset, generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import nights
from support.destinations import Target, make_target
from support.first_night import FirstNights
from support.postgres import PostgresServer
from support.schedule import longest_first
from support.settings import API_KEY, DATASET_SPEC

if TYPE_CHECKING:
    from cekura_sessions.run.night import RunOutcome


@pytest.fixture
def dataset() -> FakeDataset:
    return generate(DATASET_SPEC)


@pytest.fixture
def api(dataset: FakeDataset) -> Iterator[FakeCekuraApi]:
    with FakeCekuraApi(dataset, api_key=API_KEY, faults=Faults()) as server:
        yield server


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cekura.duckdb"


RunNight = Callable[..., "RunOutcome"]


def _into_the_test(night: RunNight, api: FakeCekuraApi, db_path: Path, tmp_path: Path) -> RunNight:
    """`night` (support/nights.py's run or load) against the test's fake API into its DuckDB file,
    `overrides` over those."""

    def _night(**overrides: object) -> RunOutcome:
        return night(**{"db": db_path, "base_url": api.url, "pipelines_dir": str(tmp_path / "pipelines"), **overrides})

    return _night


@pytest.fixture
def run_night(api: FakeCekuraApi, db_path: Path, tmp_path: Path) -> RunNight:
    """Run the real pipeline against the fake API into the test's DuckDB file (support/nights.py's run)."""
    return _into_the_test(nights.run, api, db_path, tmp_path)


@pytest.fixture
def load(api: FakeCekuraApi, db_path: Path, tmp_path: Path) -> RunNight:
    """`run_night` without the SQL models (support/nights.py's load says why)."""
    return _into_the_test(nights.load, api, db_path, tmp_path)


@pytest.fixture(scope="session")
def first_nights(tmp_path_factory: pytest.TempPathFactory) -> FirstNights:
    return FirstNights(tmp_path_factory.mktemp("first-nights"))


@pytest.fixture
def first_night(first_nights: FirstNights, run_night: RunNight, dataset: FakeDataset, db_path: Path,
                tmp_path: Path) -> Callable[..., None]:
    """Put where `run_night` loads what a plain first night of the suite's data leaves
    (support/first_night.py): `first_night(**run_night's overrides)`. The test's data must still
    be the suite's, and its server serve listings whole, as `api` does."""

    def _first(**overrides: object) -> None:
        assert dataset == generate(DATASET_SPEC), "a copied first night is of the suite's data, unchanged"
        pipelines = overrides.pop("pipelines_dir", tmp_path / "pipelines")
        first_nights.copy_to(db_path, None if pipelines is None else Path(pipelines), run_night, overrides)

    return _first


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL 16 (pgserver), one per test worker, started on first use. Its files live
    outside pytest's temporary folder: as root, pgserver runs the server as a user of its own, which
    must reach them, and every pytest session started meanwhile (another worker, a second suite)
    makes `/tmp/pytest-of-<user>` private again."""
    folder = Path(tempfile.mkdtemp(prefix="cekura-postgres-"))
    server = PostgresServer(folder / "data")
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty PostgreSQL database for this test."""
    return postgres_server.new_database()


@pytest.fixture(params=["duckdb", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """The night's destination, once a DuckDB file and once a fresh PostgreSQL database."""
    server = request.getfixturevalue("postgres_server") if request.param == "postgres" else None
    return make_target(request.param, tmp_path, server)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules start longest first (support/schedule.py)."""
    longest_first(items)
