"""The key the fake API accepts in tests, and the retry policy of test runs."""

from __future__ import annotations

from cekura_sessions.api.client import RetryPolicy

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
