"""A paged listing identical to last night's is fetched but not parsed; one that changed on a
later page is read whole again, exactly."""

from __future__ import annotations

import copy
import json

import duckdb
import pytest
from cekura_sessions.api import client as client_module
from cekura_sessions.fake.server import FakeCekuraApi
from support import expected
from support.settings import API_KEY

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against the fake API

PAGE_SIZE = 7


@pytest.fixture
def paged(dataset):
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=PAGE_SIZE) as server:
        yield server


@pytest.fixture
def parsed_pages(monkeypatch):
    """How many session pages the client parsed (a spy around its two page readers)."""
    count = {"pages": 0}
    for name in ("read_first_page", "read_later_page"):
        real = getattr(client_module, name)

        def spy(content, _real=real):
            count["pages"] += 1
            return _real(content)

        monkeypatch.setattr(client_module, name, spy)
    return count


def _pages(dataset, project_id: int) -> int:
    return max(1, -(-len(dataset.sessions[project_id]) // PAGE_SIZE))


def test_an_unchanged_paged_night_parses_no_page(run_night, paged, dataset, db_path, parsed_pages):
    listed = expected.listed_project_ids(dataset)
    assert run_night(base_url=paged.url).exit_code == 0
    assert parsed_pages["pages"] == sum(_pages(dataset, p) for p in listed)
    with duckdb.connect(str(db_path), read_only=True) as con:
        chains = dict(con.execute("select project_id, page_chain from cekura_raw.project_listings").fetchall())
    multi_page = [p for p in listed if _pages(dataset, p) > 1]
    assert multi_page, "the test data has no listing of more than one page"
    for project_id in listed:
        chain = json.loads(chains[project_id]) if chains[project_id] else []
        assert len(chain) == _pages(dataset, project_id) - 1, project_id
        assert all("page=" in link for _, link in chain)

    parsed_pages["pages"] = 0
    outcome = run_night(base_url=paged.url)

    assert outcome.exit_code == 0, outcome.message
    assert parsed_pages["pages"] == 0
    assert sorted(outcome.report.projects_unchanged) == sorted(listed)
    assert outcome.report.stats.requests == 1 + sum(_pages(dataset, p) for p in listed)


def test_a_change_on_the_last_page_reloads_the_listing_exactly(run_night, paged, dataset, db_path, parsed_pages):
    listed = expected.listed_project_ids(dataset)
    assert run_night(base_url=paged.url).exit_code == 0
    victim = next(p for p in listed if _pages(dataset, p) > 2)
    tomorrow = copy.deepcopy(dataset)  # only the victim's last session changes
    last = tomorrow.sessions[victim][-1]
    last["status"] = "failed" if last["status"] != "failed" else "completed"
    last["scenario_ids"] = [101, 102, 103]
    paged.dataset = tomorrow
    parsed_pages["pages"] = 0

    outcome = run_night(base_url=paged.url)

    assert outcome.exit_code == 0, outcome.message
    assert sorted(outcome.report.projects_unchanged) == sorted(p for p in listed if p != victim)
    # the victim's pages: the unchanged ones read again from their bytes, the last one once
    assert parsed_pages["pages"] == _pages(dataset, victim)
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(tomorrow, listed)
        assert expected.loaded_scenario_ids(con) == expected.scenario_ids(tomorrow, listed)
