"""Fetching listings the way a night does (worker threads sharing one client), and what the fake
API's request log says about a throttle, for the throttle tests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import orjson
from cekura_sessions.api.client import CekuraClient
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


def _rows(body: object) -> list[dict]:
    return body["results"] if isinstance(body, dict) else body  # type: ignore[index,return-value]


def refused(log: list[RequestRecord]) -> int:
    """Answers the server gave as 429."""
    return sum(1 for record in log if record.status == 429)
