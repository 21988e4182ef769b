"""The row contract, written once: what Cekura delivers, what each raw table holds, the
timestamp rule and the status enum.

Everything else is derived from the declarations here: the Arrow schemas the source yields
(`arrow_schema`), the raw tables' DDL the models build on (`raw_tables_ddl`), the per-row rule
that says why a delivered row cannot load (`session_rejection`), the accepted values of the
models' checks (`SESSION_STATUSES`) and the README's raw-table section (`markdown_raw_tables`).

The delivered fields, as Cekura's API describes them (docs/upstream-behaviour.md): a listed session
(`message_count` is declared a string, an integer in practice; `scenario_ids` has no declared type;
`project` may be null) and a project.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from cekura_sessions import settings

# the status enum of ScenarioImprovementSessionList.status; a status outside it is kept as
# delivered (the models count it as "other")
SESSION_STATUSES = ("pending", "in_progress", "completed", "cancelled", "failed")
TERMINAL_STATUSES = ("completed", "failed", "cancelled")

RAW_SCHEMA = settings.RAW_SCHEMA  # the default dataset's; `--dataset` names another (destination/dataset.py)

PROJECTS_TABLE = "projects"


def project_is_live(alias: str, has_is_listed: bool = True) -> str:
    """SQL over the raw projects table as `alias`: the project is live, that is not deleted and still
    listed (NULL counts as live: a project asked for by id that the list never returned). The run's
    one spelling of it (the models' is `staging.stg_projects.is_live`, the same expression);
    `has_is_listed` False for a database from before that column."""
    listed = f" and {alias}.is_listed is distinct from false" if has_is_listed else ""
    return f"({alias}.is_deleted is distinct from true{listed})"
SESSIONS_TABLE = "scenario_improvement_sessions"
SCENARIO_IDS_TABLE = "scenario_improvement_sessions__scenario_ids"  # dlt's nested-table naming
PROJECT_LISTINGS_TABLE = "project_listings"
STATUS_HISTORY_TABLE = "session_status_history"
REJECTED_ROWS_TABLE = "rejected_rows"
DETAILS_TABLE = "scenario_improvement_session_details"
MESSAGES_TABLE = "scenario_improvement_session_messages"

# fields a session's detail holds that may carry customers' words: stored only as the
# messages' `content` with --conversation-text, never as a listing's unknown field
NEVER_STORED_FIELDS = frozenset({"conversation_history"})

# Marker column of the rows that clear a project whose listing became empty (dlt hard_delete):
# always NULL in the stored rows.
TOMBSTONE_COLUMN = "_cekura_tombstone"

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1

# The plain forms of an RFC 3339 date-time (the spec's `format: date-time`), offset optional,
# with field ranges: every string of these forms on a real day is one `is_timestamp` accepts,
# so the conversion's vectorised check (extract/convert.py) only needs the rule for the rest.
TIMESTAMP_PATTERN = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ]([01]\d|2[0-3]):[0-5]\d"
    r"(:[0-5]\d(\.\d{1,9})?)?(Z|[+-]([01]\d|2[0-3])(:?[0-5]\d)?)?$"
)


@dataclass(frozen=True)
class Column:
    """One column of a raw table: its name, Arrow and SQL types, and what it means."""

    name: str
    arrow: pa.DataType
    description: str
    required: bool = False  # never NULL in a stored row

    @property
    def sql(self) -> str:
        return _SQL_TYPES[self.arrow]


_SQL_TYPES = {
    pa.int64(): "bigint",
    pa.string(): "text",
    pa.bool_(): "boolean",
    pa.timestamp("us", tz="UTC"): "timestamptz",
}


@dataclass(frozen=True)
class Table:
    name: str
    description: str  # what the table holds: the table's comment in the database, and the README's
    columns: tuple[Column, ...]
    internal: tuple[Column, ...] = ()  # written by the source, never stored with a value
    # the run writes it itself (not dlt), so its DDL states the required columns as NOT NULL;
    # dlt's tables keep the nullability dlt gives them when it loads into them
    written_by_run: bool = False
    # the README's alone, after the description: words such as what is never stored stay out of
    # the database file, where tests look for them as the sign of a leak
    note: str = ""

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, c.arrow, nullable=not c.required) for c in self.columns + self.internal]
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


_TEXT_AS_DELIVERED = "as delivered (ISO-8601 text; staging parses it)"

PROJECTS = Table(
    PROJECTS_TABLE,
    "every project /user/v1/projects/ lists or once listed, deleted ones included",
    (
        Column("id", pa.int64(), "the project's id", required=True),
        Column("name", pa.string(), "the project's name"),
        Column("organization_id", pa.int64(), "the id of the project's organization"),
        Column("organization_name", pa.string(), "the name of the project's organization"),
        Column("timezone", pa.string(), "IANA time zone name as delivered (may be NULL or unknown)"),
        Column("is_deleted", pa.bool_(), "true once the project is deleted in Cekura"),
        Column("is_listed", pa.bool_(), "false once /user/v1/projects/ no longer returns the project "
               "(its rows stay here as history; it leaves every analytics model)"),
        Column("created_at", pa.string(), f"when the project was created, {_TEXT_AS_DELIVERED}"),
        Column("updated_at", pa.string(), f"when the project last changed, {_TEXT_AS_DELIVERED}"),
    ),
    note="an allow-list of columns: never members, emails, webhook URLs or anything key-like",
)

SESSIONS = Table(
    SESSIONS_TABLE,
    "one current row per session id, as delivered, plus the project it was listed under",
    (
        Column("id", pa.int64(), "the session's id (unique across projects)", required=True),
        Column("title", pa.string(), "the session's title"),
        Column("project", pa.int64(), "the session's own `project` field as delivered (may be NULL)"),
        Column("status", pa.string(), f"one of {', '.join(SESSION_STATUSES)}, or another value as delivered"),
        Column("created_at", pa.string(), f"when the session was created, {_TEXT_AS_DELIVERED}"),
        Column("updated_at", pa.string(), f"when the session last changed, {_TEXT_AS_DELIVERED}"),
        Column("message_count", pa.string(), "as delivered, as text (a string in the spec, an integer in practice)"),
        Column("project_id", pa.int64(), "the project whose listing delivered the session", required=True),
    ),
    internal=(Column(TOMBSTONE_COLUMN, pa.bool_(), "dlt hard_delete marker; always NULL when stored"),),
)

SCENARIO_IDS = Table(
    SCENARIO_IDS_TABLE,
    "one row per element of a session's `scenario_ids` list, always matching its current list",
    (
        Column("session_id", pa.int64(), "the session the list belongs to", required=True),
        Column("project_id", pa.int64(), "the project the session was listed under", required=True),
        Column("position", pa.int64(), "0-based index in the list", required=True),
        Column("value", pa.int64(), "the scenario id"),
    ),
    internal=(Column(TOMBSTONE_COLUMN, pa.bool_(), "dlt hard_delete marker; always NULL when stored"),),
)

PROJECT_LISTINGS = Table(
    PROJECT_LISTINGS_TABLE,
    "one row per project whose listing ever succeeded",
    (
        Column("project_id", pa.int64(), "the project", required=True),
        Column("listing_digest", pa.string(), "digest of the listing's answer bytes (NULL: read again next night)"),
        Column("sessions_listed", pa.int64(), "sessions in the listing"),
        Column("listed_at", pa.timestamp("us", tz="UTC"), "when the listing was last read whole"),
        Column("run_id", pa.string(), "the run that last read it"),
    ),
)

STATUS_HISTORY = Table(
    STATUS_HISTORY_TABLE,
    "append-only: one row per observed change of a session (status, updated_at, project, deletion)",
    (
        Column("session_id", pa.int64(), "the session", required=True),
        Column("project_id", pa.int64(), "the project it was listed under", required=True),
        Column("status", pa.string(), "its status as observed"),
        Column("updated_at", pa.string(), f"its updated_at as observed, {_TEXT_AS_DELIVERED}"),
        Column("observed_at", pa.timestamp("us", tz="UTC"), "when the run that saw the change started", required=True),
        Column("run_id", pa.string(), "the run that saw the change", required=True),
        Column("is_deleted", pa.bool_(), "true when the session vanished upstream", required=True),
        # last: a database from before it gains it at the end (raw_tables_ddl's add column)
        Column("observation", pa.int64(), "the comparison that saw the change: 1, 2, ... in the order the runs "
               "made them, whatever their clocks said (NULL before it was recorded)"),
    ),
    written_by_run=True,
)

REJECTED_ROWS = Table(
    REJECTED_ROWS_TABLE,
    "delivered rows that broke this contract, with why; they were not loaded",
    (
        Column("run_id", pa.string(), "the run that set the row aside"),
        Column("project_id", pa.int64(), "the project whose listing delivered it"),
        Column("raw_json", pa.string(), "the row as delivered, as JSON"),
        Column("reason", pa.string(), "what broke the contract"),
        Column("rejected_at", pa.timestamp("us", tz="UTC"), "when the run started"),
    ),
)

DETAILS = Table(
    DETAILS_TABLE,
    "one row per session whose detail (GET .../scenario-improvement-sessions/{id}/) was read; it goes "
    "with its session when the session is removed upstream",
    (
        Column("session_id", pa.int64(), "the session", required=True),
        Column("session_updated_at", pa.string(), "the session's updated_at the detail was read for, as "
               "delivered by the listing: a listing with another updated_at has the detail read again"),
        Column("created_by", pa.int64(), "the user who created the session, as delivered (NULL when absent "
               "or not an integer)"),
        Column("read_at", pa.timestamp("us", tz="UTC"), "when the detail was read"),
    ),
)

MESSAGES = Table(
    MESSAGES_TABLE,
    "one row per message of a session's conversation_history, as of its newest detail read (a re-read "
    "replaces them whole)",
    (
        Column("session_id", pa.int64(), "the session", required=True),
        Column("position", pa.int64(), "0-based index in conversation_history", required=True),
        Column("role", pa.string(), "`user`, `assistant` or another value, as delivered"),
        Column("message_at", pa.timestamp("us", tz="UTC"), "the message's timestamp (NULL when absent or "
               "not a timestamp: the rule of created_at)"),
        Column("content_chars", pa.int64(), "characters of content (NULL when absent or not text)"),
        Column("tool_calls", pa.int64(), "items in tool_calls (0 when absent or not a list)"),
        Column("content", pa.string(), "the message's text: NULL unless the run was given "
               "--conversation-text (it may hold customers' data); a night without it clears it"),
    ),
    internal=(Column(TOMBSTONE_COLUMN, pa.bool_(), "dlt hard_delete marker; always NULL when stored"),),
)

# the raw tables staging reads, declared so the models build before (or without) a load
MODEL_INPUTS = (PROJECTS, SESSIONS, SCENARIO_IDS, STATUS_HISTORY, DETAILS, MESSAGES)
RAW_TABLES = (PROJECTS, SESSIONS, SCENARIO_IDS, PROJECT_LISTINGS, STATUS_HISTORY, REJECTED_ROWS, DETAILS, MESSAGES)

# The session fields Cekura delivers (ScenarioImprovementSessionList), typed as they are kept:
# the sessions table's own columns, and `scenario_ids`, a list that becomes SCENARIO_IDS. Any of
# them may be missing or null as delivered (the rule says which may not).
DELIVERED_SCHEMA = pa.schema([
    *(SESSIONS.arrow_schema().field(name).with_nullable(True)
      for name in ("id", "title", "project", "status", "created_at", "updated_at", "message_count")),
    pa.field("scenario_ids", pa.list_(pa.int64())),
])
DELIVERED_FIELD_SET = frozenset(DELIVERED_SCHEMA.names)
TIMESTAMP_FIELDS = ("created_at", "updated_at")


def raw_tables_ddl(tables: tuple[Table, ...] = MODEL_INPUTS) -> str:
    """`create table if not exists` for these raw tables, and `add column if not exists` for
    each of their columns (DuckDB and PostgreSQL syntax).

    dlt creates the tables on its first load and may never create one (a list that is always
    empty makes no nested table, dlt #2390, #2964), or a column never delivered; a database
    from an older version lacks a column added to the contract since (projects.is_listed), and
    the models read every column. dlt reflects existing tables and only adds the columns they
    lack, so these coexist with its loads."""
    statements = [f"create schema if not exists {RAW_SCHEMA};"]
    for table in tables:
        columns = ",\n".join(
            f"    {c.name} {c.sql}{' not null' if c.required and table.written_by_run else ''}"
            for c in table.columns
        )
        statements.append(f"create table if not exists {RAW_SCHEMA}.{table.name} (\n{columns}\n);")
        statements += [f"alter table {RAW_SCHEMA}.{table.name} add column if not exists {c.name} {c.sql};"
                       for c in table.columns if not c.required]
    return "\n\n".join(statements) + "\n"


def markdown_raw_tables() -> str:
    """The README's raw-table section: one block per raw table, its columns and their meaning."""
    blocks = []
    for table in RAW_TABLES:
        rows = "\n".join(f"| `{c.name}` | {c.sql.upper()} | {c.description} |" for c in table.columns)
        about = f"{table.description}; {table.note}" if table.note else table.description
        blocks.append(
            f"`{RAW_SCHEMA}.{table.name}`: {about}\n\n| column | type | meaning |\n| --- | --- | --- |\n{rows}"
        )
    return "\n\n".join(blocks) + "\n"


# --- the per-row rule ---------------------------------------------------------------------------


def is_integer(value: Any) -> bool:
    """An integer that fits BIGINT; bool is an int subclass in Python, but `true` is not an id."""
    return type(value) is int and BIGINT_MIN <= value <= BIGINT_MAX


def is_timestamp(value: Any) -> bool:
    """An RFC 3339 date-time (TIMESTAMP_PATTERN's forms) that names a real instant.
    fromisoformat alone also takes week dates, basic forms and comma fractions that DuckDB
    cannot read; the separator checks rule those out without a regex (this runs per row)."""
    if type(value) is not str or len(value) < 16 or "," in value:
        return False
    if value[4] != "-" or value[7] != "-" or value[10] not in "Tt " or value[13] != ":":
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:  # well-formed but impossible, such as month 13
        return False
    return True


def is_integer_list(value: Any) -> bool:
    """A `scenario_ids` value that can load: a list of BIGINT integers (None is checked apart)."""
    return type(value) is list and all(is_integer(v) for v in value)


def session_rejection(row: Any) -> str | None:
    """Why this delivered session breaks the contract, or None when it may load as delivered.
    The only definition of a valid row: the conversion's vectorised checks only find the rows
    to ask this about (extract/convert.py)."""
    if not isinstance(row, dict):
        return "row is not a JSON object"
    if "id" not in row:
        return "id is missing"
    if not is_integer(row["id"]):
        return f"id is not an integer: {row['id']!r:.40}"
    for name in TIMESTAMP_FIELDS:
        if not is_timestamp(row.get(name)):
            return f"{name} is not an ISO-8601 timestamp: {row.get(name)!r:.40}"
    scenario_ids = row.get("scenario_ids")
    if scenario_ids is not None:
        if not isinstance(scenario_ids, list):
            return f"scenario_ids is not a list: {scenario_ids!r:.40}"
        if not is_integer_list(scenario_ids):
            return "scenario_ids holds something other than integers"
    if row.get("project") is not None and not is_integer(row["project"]):
        return f"project is not an integer: {row['project']!r:.40}"
    for name in ("title", "status"):
        if row.get(name) is not None and not isinstance(row[name], str):
            return f"{name} is not a string: {row[name]!r:.40}"
    message_count = row.get("message_count")
    if message_count is not None and not (isinstance(message_count, str) or is_integer(message_count)):
        return f"message_count is neither a string nor an integer: {message_count!r:.40}"
    return None


def is_identifiable(row: Any) -> bool:
    """A row whose session can be named: a JSON object with an integer id."""
    return isinstance(row, dict) and is_integer(row.get("id"))
