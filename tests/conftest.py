"""Shared fixtures: the fake Cekura API on a real loopback socket and a real DuckDB file per test."""

from __future__ import annotations

import os

os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cekura_sessions.api.client import RetryPolicy
from cekura_sessions.fake.data import DataSpec, FakeDataset, generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from cekura_sessions.run import night as pipeline

API_KEY = "canary-7f3e9a1c-key-do-not-leak"

# fast retries keep the suite quick; the caps are what the tests assert against
TEST_RETRY = RetryPolicy(
    max_attempts=4,
    max_wait_seconds=2.0,
    max_total_wait_seconds=10.0,
    backoff_initial_seconds=0.02,
    connect_timeout_seconds=2.0,
    read_timeout_seconds=2.0,
)


@pytest.fixture
def dataset() -> FakeDataset:
    return generate(DataSpec(projects=6, sessions_per_project=30, seed=11))


@pytest.fixture
def api(dataset: FakeDataset) -> Iterator[FakeCekuraApi]:
    with FakeCekuraApi(dataset, api_key=API_KEY, faults=Faults()) as server:
        yield server


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cekura.duckdb"


RunNight = Callable[..., pipeline.RunOutcome]


@pytest.fixture
def run_night(api: FakeCekuraApi, db_path: Path, tmp_path: Path) -> RunNight:
    """Run the real pipeline against the fake API into the test's DuckDB file."""

    def _run(**overrides: object) -> pipeline.RunOutcome:
        settings = {
            "db_path": db_path,
            "api_key": API_KEY,
            "base_url": api.url,
            "pipelines_dir": str(tmp_path / "pipelines"),
            "db_wait_seconds": 2.0,
            "retry": TEST_RETRY,
        }
        settings.update(overrides)
        return pipeline.run(pipeline.RunConfig(**settings))

    return _run
