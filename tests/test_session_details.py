"""Sessions' details (issue 21): read incrementally after the listings, within a budget, into the
raw details and messages tables, and the models session_activity and project_activity.

Expected rows come from the fake's data in plain Python (FakeDataset.detail), never from the SQL
under test."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest

from cekura_sessions.fake.data import DataSpec, FakeDataset, generate
from cekura_sessions.fake.server import FakeCekuraApi

from support.model_expectations import quantile_cont
from support.processes import run_cli
from support.settings import API_KEY
from support.raw_data import parse_timestamp
from support.secrets import files_holding

pytestmark = pytest.mark.e2e


# --- plain-Python expectations from the fake's data ----------------------------------------------


def counted_sessions(dataset: FakeDataset) -> dict[int, tuple[int, str]]:
    """session id -> (project id, listed updated_at) of the sessions in the models."""
    live = {p["id"] for p in dataset.projects if not p.get("is_deleted")}
    return {s["id"]: (pid, s["updated_at"]) for pid, s in dataset.all_sessions() if pid in live}


def message_at(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) < 16 or value[10] not in "Tt ":
        return None
    return parse_timestamp(value)


def expected_messages(dataset: FakeDataset, session_ids: set[int], with_text: bool = False) -> set[tuple]:
    rows = set()
    for sid in session_ids:
        detail = dataset.detail(sid)
        for position, m in enumerate(detail["conversation_history"]):
            content = m.get("content")
            rows.add((sid, position, m.get("role"), message_at(m.get("timestamp")),
                      len(content) if isinstance(content, str) else None,
                      len(m["tool_calls"]) if isinstance(m.get("tool_calls"), list) else 0,
                      content if with_text else None))
    return rows


def expected_activity(dataset: FakeDataset, session_ids: set[int]) -> dict[int, dict[str, Any]]:
    counted = counted_sessions(dataset)
    out = {}
    for sid in session_ids:
        detail = dataset.detail(sid)
        history = detail["conversation_history"]
        times = [message_at(m.get("timestamp")) for m in history]
        known = [t for t in times if t is not None]
        roles = [m.get("role") for m in history]
        first_user = roles.index("user") if "user" in roles else None
        answer = next((i for i in range(first_user + 1, len(roles)) if roles[i] == "assistant"), None) \
            if first_user is not None else None
        response = None
        if answer is not None and times[first_user] is not None and times[answer] is not None:
            response = (times[answer] - times[first_user]).total_seconds()
        out[sid] = {
            "project_id": counted[sid][0],
            "messages": len(history),
            "user_messages": roles.count("user"),
            "assistant_messages": roles.count("assistant"),
            "tool_calls": sum(len(m["tool_calls"]) for m in history if isinstance(m.get("tool_calls"), list)),
            "first_message_at": min(known) if known else None,
            "last_message_at": max(known) if known else None,
            "active_seconds": (max(known) - min(known)).total_seconds() if len(known) >= 2 else None,
            "first_response_seconds": response,
            "created_by": detail["created_by"],
        }
    return out


def readable(dataset: FakeDataset) -> set[int]:
    return {sid for sid in counted_sessions(dataset) if sid not in dataset.details_gone}


# --- reading the database --------------------------------------------------------------------------


def raw_messages(con: Any) -> set[tuple]:
    rows = con.execute("select session_id, position, role, message_at, content_chars, tool_calls, content "
                       "from cekura_raw.scenario_improvement_session_messages").fetchall()
    return {(r[0], r[1], r[2], r[3].astimezone(timezone.utc) if r[3] is not None else None, *r[4:]) for r in rows}


def activity_rows(con: Any) -> dict[int, dict[str, Any]]:
    cols = ("session_id", "project_id", "messages", "user_messages", "assistant_messages", "tool_calls",
            "first_message_at", "last_message_at", "active_seconds", "first_response_seconds", "created_by")
    rows = con.execute(f"select {', '.join(cols)} from analytics.session_activity").fetchall()
    out = {}
    for row in rows:
        values = dict(zip(cols, row))
        for name in ("first_message_at", "last_message_at"):
            if values[name] is not None:
                values[name] = values[name].astimezone(timezone.utc)
        out[values.pop("session_id")] = values
    return out


def close(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]]) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        for name, value in a[key].items():
            other = b[key][name]
            if isinstance(value, float) or isinstance(other, float):
                if (value is None) != (other is None) or (value is not None and not math.isclose(value, other, abs_tol=1e-6)):
                    return False
            elif value != other:
                return False
    return True


# --- the tests ----------------------------------------------------------------------------------------


def test_details_over_three_nights_exact_rows_and_requests(api: FakeCekuraApi, dataset: FakeDataset, run_night, db_path):
    """Night 1 reads every detail (one answers 404); night 2 re-reads only the new and changed
    sessions (one conversation shrinks, one session vanishes); night 3, with nothing changed,
    asks for no detail at all."""
    from cekura_sessions.run.night import RunConfig

    # night 2 empties a project on purpose: the removal guard (issue 19), where there is one, lets it
    accept = {"accept_removals": True} if "accept_removals" in RunConfig.__dataclass_fields__ else {}
    counts = []
    night = dataset
    for n in (1, 2, 3):
        if n == 2:
            night = dataset.next_night(seed=11)
            api.dataset = night
        api.reset_log()
        outcome = run_night(details=True, **accept)
        assert outcome.exit_code == 0, outcome.message
        details = outcome.report.details
        counts.append((n, api.request_count("details"), details.read, len(details.missing), details.left))
        want_ids = readable(night)
        with duckdb.connect(str(db_path), read_only=True) as con:
            got_details = dict(con.execute("select session_id, session_updated_at from "
                                           "cekura_raw.scenario_improvement_session_details").fetchall())
            assert got_details == {sid: counted_sessions(night)[sid][1] for sid in want_ids}, f"night {n}"
            assert raw_messages(con) == expected_messages(night, want_ids), f"night {n}"
            got = activity_rows(con)
            assert close(got, expected_activity(night, want_ids)), f"night {n}: session_activity differs"
            awaiting = dict(con.execute("select project_id, sessions_awaiting_details from analytics.project_activity").fetchall())
            gone = dataset.details_gone & set(counted_sessions(night))
            assert sum(awaiting.values()) == len(gone), "the 404'd session has no detail read"
        if n == 2:
            changed = {sid for sid, (_, at) in counted_sessions(night).items()
                       if counted_sessions(dataset).get(sid, (None, None))[1] != at}
            assert details.read == len(changed - dataset.details_gone), (changed, details)
            assert night.conversations_shrunk, "night 2 shrinks no conversation: the test shows nothing"
    first = len(counted_sessions(dataset))
    assert counts[0] == (1, first, first - 1, 1, 0), counts
    assert counts[2] == (3, 0, 0, 0, 0), counts
    print("requests per night (night, detail requests, read, 404, waiting):", counts)


def test_a_budget_leaves_a_backlog_read_newest_first_over_the_next_nights(api, dataset, run_night, db_path):
    order = sorted(((parse_timestamp(at), sid) for sid, (_, at) in counted_sessions(dataset).items()), reverse=True)
    seen: list[int] = []
    lefts = []
    for n in range(4):
        api.reset_log()
        outcome = run_night(details=True, details_budget=50)
        assert outcome.exit_code == 0, outcome.message
        with duckdb.connect(str(db_path), read_only=True) as con:
            stored = {r[0] for r in con.execute("select session_id from cekura_raw.scenario_improvement_session_details").fetchall()}
        asked = {r.project_id for r in api.requests_log if r.endpoint == "details"}
        # read concurrently: within a night in any order, across nights newest first
        assert asked == {sid for _, sid in order[50 * n: 50 * n + 50]}, f"night {n + 1}"
        seen += sorted(asked)
        lefts.append(outcome.report.details.left)
    assert sorted(seen) == sorted(sid for _, sid in order)
    assert stored == readable(dataset)
    assert lefts == [max(0, len(order) - 50 * n) for n in (1, 2, 3, 4)], lefts


def test_no_details_reads_none_and_status_counts_the_waiting(api, dataset, run_night, db_path, tmp_path):
    outcome = run_night(details=False)
    assert outcome.exit_code == 0 and api.request_count("details") == 0
    status = run_cli(tmp_path, "status", "--db", str(db_path))
    assert f"details: {len(counted_sessions(dataset))} session(s) await their detail" in status.stdout, status.stdout


def test_a_detail_whose_retries_run_out_makes_the_night_partial_and_waits(api, dataset, run_night):
    from cekura_sessions.fake.faults import Faults

    victim = sorted(readable(dataset))[3]
    api.faults = Faults(script={("details", victim): ["500"] * 20})
    outcome = run_night(details=True)
    assert outcome.exit_code == 1 and f"session {victim}" in outcome.message, outcome.message
    assert outcome.report.details.failed.keys() == {victim} and outcome.report.details.left == 1
    api.faults = Faults()
    api.reset_log()
    assert run_night(details=True).exit_code == 0 and api.request_count("details") == 1


@pytest.fixture
def canary_dataset() -> FakeDataset:
    return generate(DataSpec())


def _canary_session(dataset: FakeDataset) -> int:
    return sorted(readable(dataset))[10]


def _canary(dataset: FakeDataset) -> str:
    detail = dataset.detail(_canary_session(dataset))
    return next(m["content"] for m in detail["conversation_history"] if isinstance(m.get("content"), str))


def test_conversation_text_is_written_nowhere_without_the_option(tmp_path: Path, canary_dataset: FakeDataset):
    """The canary: one message's unique text, and the same dataset's list endpoint sending
    conversation_history as an unknown field, is found in no file under the test's folder nor in
    the command's output (the next test stores it with --conversation-text)."""
    canary = _canary(canary_dataset)
    for pid, s in canary_dataset.all_sessions():
        s["conversation_history"] = canary_dataset.detail(s["id"])["conversation_history"] if s["id"] not in canary_dataset.details_gone else []
    db = tmp_path / "cekura.duckdb"
    with FakeCekuraApi(canary_dataset, api_key=API_KEY) as api:
        plain = run_cli(tmp_path, "--log-level", "DEBUG", "run", "--db", str(db), "--base-url", api.url)
        assert plain.returncode == 0, plain.stderr
        # the request log names a detail's session where a listing's names its project
        read = api.request_count(endpoint="details", project_id=_canary_session(canary_dataset))
        assert read == 1, "the canary's detail was never read: its absence proves nothing"
        needle = canary.encode()
        assert canary not in plain.stdout + plain.stderr
        assert files_holding(tmp_path, needle) == []
        with duckdb.connect(str(db), read_only=True) as con:
            columns = {r[0] for r in con.execute("select column_name from information_schema.columns where "
                                                 "table_name = 'scenario_improvement_sessions'").fetchall()}
            assert not any(c.startswith("conversation_history") for c in columns), columns


def test_conversation_text_is_stored_with_the_option_and_cleared_without(run_night, dataset, db_path):
    canary = _canary(dataset)
    assert run_night(details=True, conversation_text=True).exit_code == 0
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert con.execute("select count(*) from cekura_raw.scenario_improvement_session_messages where content = ?",
                           [canary]).fetchone()[0] == 1
        assert raw_messages(con) == expected_messages(dataset, readable(dataset), with_text=True)
    assert run_night(details=True).exit_code == 0
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert con.execute("select count(content) from cekura_raw.scenario_improvement_session_messages").fetchone()[0] == 0


def test_models_are_identical_on_duckdb_and_postgres(target, tmp_path):
    dataset = generate(DataSpec())
    with FakeCekuraApi(dataset, api_key=API_KEY) as api:
        done = run_cli(tmp_path, "run", "--db", target.db, "--base-url", api.url,
                       DLT_DATA_DIR=str(target.dlt_data_dir))
        assert done.returncode == 0, done.stderr
    with target.read() as con:
        got = activity_rows(con)
        project = {r[0]: r[1:] for r in con.execute(
            "select project_id, sessions_with_details, sessions_awaiting_details, median_messages, "
            "median_active_seconds, p90_first_response_seconds from analytics.project_activity").fetchall()}
    want = expected_activity(dataset, readable(dataset))
    assert close(got, want), target.kind
    for pid, row in project.items():
        mine = [v for v in want.values() if v["project_id"] == pid]
        assert row[0] == len(mine), (target.kind, pid)
        medians = (quantile_cont([float(v["messages"]) for v in mine], 0.5),
                   quantile_cont([v["active_seconds"] for v in mine if v["active_seconds"] is not None], 0.5),
                   quantile_cont([v["first_response_seconds"] for v in mine if v["first_response_seconds"] is not None], 0.9))
        for got_value, want_value in zip(row[2:], medians):
            assert (got_value is None and want_value is None) or math.isclose(got_value, want_value, abs_tol=1e-6), (target.kind, pid, row, medians)
