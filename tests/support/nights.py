"""A night of the real pipeline as the suite runs one: conftest.py's `run_night` and `load`, and the
nights a module shares between its tests (a fixture of any scope)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from support.settings import API_KEY, TEST_RETRY

if TYPE_CHECKING:
    from cekura_sessions.run.night import RunOutcome

SETTINGS = {
    "api_key": API_KEY,
    "db_wait_seconds": 2.0,
    "retry": TEST_RETRY,
    # the listings' night: a test of the sessions' details asks for them (details=True)
    "details": False,
}


def run(**settings: Any) -> RunOutcome:
    """A night with SETTINGS, `settings` over them (`db`, `base_url` and `pipelines_dir` at least:
    see RunConfig); its outcome."""
    from cekura_sessions.run import night  # imports dlt: when a night runs, not when collecting

    return night.run(night.RunConfig(**{**SETTINGS, **settings}))


def load(**settings: Any) -> RunOutcome:
    """`run` without the SQL models (build_models=False, the CLI's --no-models), for a test of what
    reaches the raw tables: the models and their checks, about half a small night's CPU, are other
    files' subject (test_models_end_to_end.py, test_checks.py)."""
    return run(**{"build_models": False, **settings})
