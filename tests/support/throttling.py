"""Fetching listings the way a night does (worker threads sharing one client), and what the fake
API's request log says about a throttle, for the throttle tests."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import orjson
from cekura_sessions.api.client import CekuraClient
from cekura_sessions.fake.data import FakeDataset
from cekura_sessions.fake.server import RequestRecord
from cekura_sessions.settings import DEFAULT_CONCURRENCY


def fetch_listings(client: CekuraClient, project_ids: list[int],
                   workers: int = DEFAULT_CONCURRENCY) -> dict[int, list[int] | BaseException]:
    """Each project's session ids as the client read them (or the error that stopped it), fetched
    by `workers` threads sharing `client`, as extract/source.py does."""

    def one(project_id: int) -> list[int] | BaseException:
        try:
            listing = client.list_sessions(project_id)
        except Exception as error:  # noqa: BLE001 - reported per project, as a night does
            return error
        return [row["id"] for content in listing.contents for row in _rows(orjson.loads(content))]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(project_ids, pool.map(one, project_ids)))


def listings_of(dataset: FakeDataset, project_ids: list[int]) -> dict[int, list[int]]:
    """What fetch_listings must return, in plain Python from the fake's dataset."""
    return {pid: [s["id"] for s in dataset.sessions[pid]] for pid in project_ids}


def _rows(body: object) -> list[dict]:
    return body["results"] if isinstance(body, dict) else body  # type: ignore[index,return-value]


def refused(log: list[RequestRecord]) -> int:
    """Answers the server gave as 429."""
    return sum(1 for record in log if record.status == 429)


@dataclass(frozen=True)
class Night:
    """A throttled fetch as the server saw it."""

    requests: int
    refused: int
    accepted: int

    @property
    def refused_share(self) -> float:
        return self.refused / self.requests if self.requests else 0.0


def night_of(log: list[RequestRecord]) -> Night:
    no = refused(log)
    return Night(len(log), no, len(log) - no)


def drf_floor(requests: int, limit: int, window_seconds: float) -> float:
    """DRF's own floor for `requests` accepted requests: N at once each window."""
    return window_seconds * (math.ceil(requests / limit) - 1)
