"""Sessions' details (`GET .../scenario-improvement-sessions/{id}/`): read within a budget,
after the night's listings loaded, and turned into the raw tables `DETAILS` and `MESSAGES`
(extract/contract.py) as Arrow tables for dlt.

Which sessions wait for their detail, and in what order, is decided by the run
(run/details_state.py); this module asks the API for them, at most `concurrency` at a time
through the listings' client (the same pacer, retry policy and key), and converts the answers.
A message's `content` is kept only when the run was given --conversation-text: otherwise it is
dropped here, before anything is written, and only its length is kept.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import dlt
import pyarrow as pa

from cekura_sessions.api.client import CekuraClient
from cekura_sessions.api.errors import FatalApiError, ThrottledTooLong, describe_error
from cekura_sessions.api.pacing import Pacer
from cekura_sessions.extract import contract
from cekura_sessions.extract.bounded import completed
from cekura_sessions.extract.hints import with_hints

log = logging.getLogger(__name__)

FLUSH_DETAILS = 5_000  # details converted and handed to dlt at a time (a few MB of Arrow)

DETAILS_SCHEMA = contract.DETAILS.arrow_schema()
MESSAGES_SCHEMA = contract.MESSAGES.arrow_schema()


@dataclass
class DetailsReport:
    """What the night did with details. `waiting`: sessions whose detail was due when reading
    began; `budget`: requests allowed (None: no limit); `read`: details stored; `missing`:
    session id -> the updated_at whose detail answered 404; `failed`: session id -> why its
    retries ran out; `stopped`: why reading stopped before the budget (the time budget), or None."""

    waiting: int = 0
    budget: int | None = None
    read: int = 0
    missing: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    stopped: str | None = None
    skipped: bool = False  # --no-details

    @property
    def left(self) -> int:
        """Sessions still waiting after this night (read on the next nights)."""
        return self.waiting - self.read - len(self.missing)

    @property
    def requests(self) -> int:
        return self.read + len(self.missing) + len(self.failed)


def default_budget(pacer: Pacer | None, time_budget_seconds: float, started_at: datetime) -> int | None:
    """Detail requests the night can still afford: the seconds its time budget has left times
    the throttle's rate as learned (requests per second); None (no limit) while no throttle is
    known, since an API that never throttles costs only the requests' own time."""
    throttle = pacer.throttle if pacer is not None else None
    if throttle is None:
        return None
    spent = (datetime.now(timezone.utc) - started_at).total_seconds()
    return max(0, math.floor((time_budget_seconds - spent) * throttle.rate))


def details_resource(
    client: CekuraClient, due: list[tuple[int, str]], concurrency: int, with_text: bool, report: DetailsReport
) -> Any:
    """The dlt resource reading `due` ((session id, listed updated_at), in the order to read
    them, already cut to the budget) and yielding both tables in flushes."""

    @dlt.resource(name=contract.DETAILS_TABLE, write_disposition={"disposition": "merge", "strategy": "delete-insert"})
    def session_details() -> Iterator[Any]:
        rows = DetailRows(with_text, datetime.now(timezone.utc))
        for session_id, updated_at, body in _fetched(client, due, concurrency, report):
            rows.add(session_id, updated_at, body)
            report.read += 1
            if rows.details >= FLUSH_DETAILS:
                yield from _tables(rows)
        yield from _tables(rows)

    return session_details()


def _tables(rows: DetailRows) -> Iterator[Any]:
    if rows.details:
        details, messages = rows.take()
        yield with_hints(contract.DETAILS_TABLE, details)
        yield with_hints(contract.MESSAGES_TABLE, messages)


def _fetched(
    client: CekuraClient, due: list[tuple[int, str]], concurrency: int, report: DetailsReport
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(session id, updated_at, detail) of each detail read, as they complete; a 404 goes to
    `report.missing`, retries run out to `report.failed`; the pacer's time budget running out
    stops the reading (what is left waits for the next night). A refused key raises."""
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cekura-detail") as pool:
        # closed before the pool's shutdown: the calls not started are cancelled, not waited for
        with closing(completed(pool, lambda item: client.get_detail(item[0]), due, 2 * concurrency,
                               more=lambda: report.stopped is None)) as fetched:
            for (session_id, updated_at), future in fetched:
                body = _outcome(future, session_id, updated_at, report)
                if body is not None:
                    yield session_id, updated_at, body


def _outcome(future: Future[dict[str, Any] | None], session_id: int, updated_at: str,
             report: DetailsReport) -> dict[str, Any] | None:
    try:
        body = future.result()
    except FatalApiError:
        raise
    except ThrottledTooLong as error:
        report.stopped = report.stopped or str(error)
        return None
    except Exception as error:  # noqa: BLE001 - one detail failing leaves its session waiting
        report.failed[session_id] = describe_error(error)
        log.warning("session %s: its detail could not be read: %s", session_id, describe_error(error))
        return None
    if body is None:
        report.missing[session_id] = updated_at
    return body


class DetailRows:
    """Details converted as they arrive into the columns of DETAILS and MESSAGES. `with_text`:
    keep each message's `content` (else NULL: only `content_chars` says how long it was);
    `read_at`: when the night read them."""

    def __init__(self, with_text: bool, read_at: datetime) -> None:
        self.with_text = with_text
        self.read_at = read_at
        self._clear()

    def _clear(self) -> None:
        self._details: dict[str, list[Any]] = {name: [] for name in contract.DETAILS.names}
        self._messages: dict[str, list[Any]] = {name: [] for name in MESSAGES_SCHEMA.names}

    @property
    def details(self) -> int:
        return len(self._details["session_id"])

    def add(self, session_id: int, updated_at: str, body: dict[str, Any]) -> None:
        """One detail as delivered; `updated_at`: the listed updated_at it was read for."""
        created_by = body.get("created_by")
        for name, value in (("session_id", session_id), ("session_updated_at", updated_at),
                            ("created_by", created_by if contract.is_integer(created_by) else None),
                            ("read_at", self.read_at)):
            self._details[name].append(value)
        history = body.get("conversation_history")
        messages = history if isinstance(history, list) else []
        for position, message in enumerate(messages):
            self._message(session_id, position, message if isinstance(message, dict) else {})
        if not messages:  # nothing to insert, but the stored messages must go: a tombstone
            self._row(session_id, -1, None, None, None, 0, None, True)

    def _message(self, session_id: int, position: int, message: dict[str, Any]) -> None:
        role, content, calls = message.get("role"), message.get("content"), message.get("tool_calls")
        self._row(
            session_id,
            position,
            role if isinstance(role, str) or role is None else _as_text(role),
            message_at(message.get("timestamp")),
            len(content) if isinstance(content, str) else None,
            len(calls) if isinstance(calls, list) else 0,
            content if self.with_text and isinstance(content, str) else None,
            None,
        )

    def _row(self, *values: Any) -> None:
        for name, value in zip(MESSAGES_SCHEMA.names, values):
            self._messages[name].append(value)

    def take(self) -> tuple[pa.Table, pa.Table]:
        """The rows added since the last take, as (details, messages) Arrow tables."""
        details = pa.table(self._details, schema=DETAILS_SCHEMA)
        messages = pa.table(self._messages, schema=MESSAGES_SCHEMA)
        self._clear()
        return details, messages


def message_at(value: Any) -> datetime | None:
    """A message's timestamp by the rule of created_at (contract.is_timestamp), as an aware UTC
    instant; one without an offset is read as UTC; anything else is None."""
    if not contract.is_timestamp(value):
        return None
    instant = datetime.fromisoformat(value)
    if instant.tzinfo is None:
        return instant.replace(tzinfo=timezone.utc)
    return instant.astimezone(timezone.utc)


def _as_text(value: Any) -> str:
    import orjson

    return orjson.dumps(value, default=str).decode()
