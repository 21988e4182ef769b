"""The key the fake API accepts in tests, the retry policy of test runs, and their usual data."""

from __future__ import annotations

from cekura_sessions.api.client import RetryPolicy
from cekura_sessions.fake.data import DataSpec

# a canary: the secrets tests search every output and file for it
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

# the generated data most tests run against (conftest.py's `dataset`, and module-scoped nights)
DATASET_SPEC = DataSpec(projects=6, sessions_per_project=30, seed=11)
