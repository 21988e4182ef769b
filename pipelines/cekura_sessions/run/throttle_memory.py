"""The API's throttle as the nights learned it, kept in `cekura_raw.api_throttles` (written
outside dlt, as the run ledger is), so the next night paces from its first request instead of
learning it again from 429s.

One row per base URL: the throttle's limit and window and when a night last learned or
confirmed it (a 429, or rate-limit headers). Never the key, nor anything derived from it. A row
older than REMEMBER_DAYS is not used: the API's limit may have been raised, and a night paced
from memory never sees a 429 to say so, so every REMEMBER_DAYS a night learns it afresh (a few
requests refused).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from cekura_sessions.api.pacing import Throttle
from cekura_sessions.destination.warehouse import as_warehouse
from cekura_sessions.extract import contract

log = logging.getLogger(__name__)

TABLE_NAME = "api_throttles"
_TABLE = f"{contract.RAW_SCHEMA}.{TABLE_NAME}"
REMEMBER_DAYS = 7

_DDL = f"""
create schema if not exists {contract.RAW_SCHEMA};
create table if not exists {_TABLE} (
    base_url text primary key,
    limit_requests integer not null,
    window_seconds double precision not null,
    learned_at timestamptz not null
);
"""


def remembered(con: Any, now: datetime | None = None) -> dict[str, Throttle]:
    """Each base URL's throttle as learned within the last REMEMBER_DAYS (`con`: a DuckDB or
    psycopg2 connection, or a Warehouse)."""
    warehouse = as_warehouse(con)
    if not warehouse.has_table(contract.RAW_SCHEMA, TABLE_NAME):
        return {}
    since = (now or datetime.now(timezone.utc)) - timedelta(days=REMEMBER_DAYS)
    rows = warehouse.execute(f"select base_url, limit_requests, window_seconds, learned_at from {_TABLE}").fetchall()
    return {url: Throttle(int(limit), float(window)) for url, limit, window, learned_at in rows
            if limit and limit > 0 and window and window > 0 and _aware(learned_at) >= since}


def record(con: Any, base_url: str, throttle: Throttle, now: datetime | None = None) -> None:
    """Keep what this night learned of `base_url`'s throttle."""
    warehouse = as_warehouse(con)
    warehouse.execute(_DDL)
    warehouse.execute(f"delete from {_TABLE} where base_url = ?", [base_url])
    warehouse.execute(
        f"insert into {_TABLE} (base_url, limit_requests, window_seconds, learned_at) values (?, ?, ?, ?)",
        [base_url, throttle.limit, float(throttle.window_seconds), now or datetime.now(timezone.utc)],
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
