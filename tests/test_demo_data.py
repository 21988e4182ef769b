"""The generated data is dated relative to the day it is "as of" (today, for the demo and
`fake-api`), and looks like a live account on that day: recent sessions may still be open, old
ones have finished. Expectations are computed here from the dates alone."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest
from cekura_sessions.fake.data import DEFAULT_AS_OF, DataSpec, generate, parse_ts
from support import warm

OPEN = ("pending", "in_progress")
README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
DAY = timedelta(days=1)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def _shifted(text: str, by: timedelta) -> str:
    """The same timestamp text `by` later, in the same form (offset, microseconds)."""
    moved = parse_ts(text) + by
    body = moved.replace(tzinfo=None).isoformat()
    suffix = "Z" if text.endswith("Z") else text[-6:]
    return body + suffix


def test_sessions_are_created_over_the_30_days_before_as_of():
    as_of = date(2031, 3, 15)
    data = generate(DataSpec(projects=8, sessions_per_project=60, as_of=as_of))
    sessions = [s for rows in data.sessions.values() for s in rows]

    created = [parse_ts(s["created_at"]) for s in sessions]
    updated = [parse_ts(s["updated_at"]) for s in sessions]
    assert data.as_of == _midnight(as_of)
    assert min(created) >= _midnight(as_of) - 31 * DAY, min(created)
    assert max(created) < _midnight(as_of) - DAY, max(created)
    assert max(updated) < _midnight(as_of), max(updated)
    # spread over the whole span: a session on each of the 30 days
    days = {(_midnight(as_of) - 31 * DAY + n * DAY).date() for n in range(30)}
    assert {c.astimezone(timezone.utc).date() for c in created} == days


def _shifted_everywhere(value: Any, by: timedelta) -> Any:
    """`value` (a project or session, nested members included) with every created_at and
    updated_at `by` later."""
    if isinstance(value, dict):
        return {k: _shifted(v, by) if k in ("created_at", "updated_at") else _shifted_everywhere(v, by)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted_everywhere(v, by) for v in value]
    return value


def test_moving_as_of_moves_every_timestamp_and_changes_nothing_else():
    by = timedelta(days=400)
    before = generate(DataSpec(projects=7, sessions_per_project=30))
    after = generate(DataSpec(projects=7, sessions_per_project=30, as_of=DEFAULT_AS_OF + by))

    assert after.as_of - before.as_of == by
    assert after.projects == _shifted_everywhere(before.projects, by)
    assert after.sessions == _shifted_everywhere(before.sessions, by)


def test_default_as_of_is_fixed_so_tests_can_compute_dates():
    assert DataSpec().as_of == DEFAULT_AS_OF == date(2026, 10, 2)
    assert generate(DataSpec()) == generate(DataSpec(as_of=date(2026, 10, 2)))


def test_recent_sessions_may_be_open_old_ones_have_finished():
    as_of = date(2030, 1, 1)
    data = generate(DataSpec(projects=20, sessions_per_project=300, as_of=as_of))
    recent_since = _midnight(as_of) - 2 * DAY  # the span's last day
    recent, old = [], []
    for rows in data.sessions.values():
        for s in rows:
            (recent if parse_ts(s["created_at"]) >= recent_since else old).append(s["status"] in OPEN)

    assert len(recent) > 150 and len(old) > 5000, (len(recent), len(old))
    assert 0.15 < sum(recent) / len(recent) < 0.32, f"{sum(recent)} of {len(recent)} recent sessions open"
    assert 0 < sum(old) / len(old) < 0.02, f"{sum(old)} of {len(old)} older sessions open"
    everything = recent + old
    assert sum(everything) / len(everything) < 0.04, f"{sum(everything)} of {len(everything)} open"


@pytest.fixture(scope="module")
def demo_today(tmp_path_factory) -> tuple[Path, str, set[date]]:
    """A demo database built by the CLI with its default day (today); the days (UTC) it may have
    taken as today, and what it printed."""
    folder = tmp_path_factory.mktemp("demo")
    db = folder / "demo.duckdb"
    first_day = datetime.now(timezone.utc).date()
    result = warm.run(
        [sys.executable, "-m", "cekura_sessions.cli", "demo", "--db", str(db), "--projects", "4",
         "--sessions-per-project", "60"],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return db, result.stdout, {first_day, datetime.now(timezone.utc).date()}


@pytest.mark.e2e  # the demo CLI (the whole pipeline) in a subprocess
def test_demo_data_ends_before_today_and_the_last_30_days_hold_it(demo_today):
    db, printed, runs = demo_today

    with duckdb.connect(str(db), read_only=True) as con:
        newest, total, last_30_days, still_open = con.execute(
            "select max(created_at), count(*), count(*) filter (where created_at >= now() - interval 30 days), "
            "count(*) filter (where status in ('pending', 'in_progress')) from analytics.sessions"
        ).fetchone()
    # the demo's as_of is the day it ran (midnight UTC); the span of creation ends a day before it
    assert newest.astimezone(timezone.utc).date() in {day - 2 * DAY for day in runs}, (newest, runs)
    assert last_30_days >= 0.9 * total > 0, (last_30_days, total)
    assert still_open <= 0.1 * total, (still_open, total)
    spans = {f"sessions created {day - 31 * DAY} .. {day - 2 * DAY}" for day in runs}
    assert any(span in printed for span in spans), (spans, printed)


@pytest.mark.e2e  # the demo CLI in a subprocess, the README's command in another
def test_readme_last_7_days_query_finds_the_demo_data(demo_today):
    db, _, _ = demo_today
    line = next(line for line in README.splitlines() if "interval 7 days" in line)
    program, flag, code = shlex.split(line)
    assert (program, flag) == (".venv/bin/python", "-c"), line

    done = subprocess.run([sys.executable, "-c", code.replace("'demo.duckdb'", repr(str(db)))],
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        statuses = con.execute("select distinct status from analytics.sessions").fetchall()
    shown = [status for (status,) in statuses if f"│ {status} " in done.stdout]
    assert "completed" in shown, done.stdout


@pytest.mark.e2e  # the demo CLI in a subprocess
def test_demo_as_of_gives_the_same_data_for_the_same_day(tmp_path):
    def newest(folder: str) -> tuple:
        (tmp_path / folder).mkdir()
        db = tmp_path / folder / "demo.duckdb"
        done = warm.run(
            [sys.executable, "-m", "cekura_sessions.cli", "demo", "--db", str(db), "--projects", "3",
             "--sessions-per-project", "20", "--as-of", "2029-02-01"],
            cwd=tmp_path / folder, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        with duckdb.connect(str(db), read_only=True) as con:
            return con.execute("select max(updated_at), count(*), sum(hash(title, status)) from analytics.sessions"
                               ).fetchone()

    first, second = newest("a"), newest("b")
    assert first == second
    assert first[0] < _midnight(date(2029, 2, 1)), first


def _summary_rows(printed: str) -> dict[int, str]:
    """The demo summary's table: project id -> the rest of its row."""
    rows = {}
    for line in printed.splitlines():
        first, _, rest = line.strip().partition("  ")
        if first.isdigit():
            rows[int(first)] = rest
    return rows


@pytest.mark.e2e  # the demo CLI in a subprocess, twice on one file
def test_demo_summary_says_what_changed_names_every_project_and_the_deleted_one(tmp_path):
    spec = DataSpec(projects=12, sessions_per_project=20, as_of=date(2029, 2, 1))
    data = generate(spec)
    live = [p for p in data.projects if not p.get("is_deleted")]
    deleted = [p["id"] for p in data.projects if p.get("is_deleted")]
    stored = sum(len(data.sessions.get(p["id"], [])) for p in live)
    args = [sys.executable, "-m", "cekura_sessions.cli", "demo", "--db", str(tmp_path / "demo.duckdb"),
            "--projects", "12", "--sessions-per-project", "20", "--as-of", "2029-02-01"]

    first, second = (warm.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
                     for _ in range(2))

    for done in (first, second):
        assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(live)} projects read in " in first.stdout, first.stdout
    assert f": {stored:,} new or changed sessions; {stored:,} stored\n" in first.stdout, first.stdout
    assert f": 0 new or changed sessions; {stored:,} stored\n" in second.stdout, second.stdout
    rows = _summary_rows(second.stdout)
    assert sorted(rows) == sorted(p["id"] for p in live), second.stdout
    for project in live:
        sessions = data.sessions.get(project["id"], [])
        completed = sum(s["status"] == "completed" for s in sessions)
        cells = rows[project["id"]].rsplit(maxsplit=3)
        assert cells[0] == project["name"], (project, rows[project["id"]])
        assert cells[1:3] == [str(len(sessions)), str(completed)], (project, rows[project["id"]])
    # three projects share the first 28 characters of their name; the rows still tell them apart
    assert max(Counter(p["name"][:28] for p in live).values()) >= 2, [p["name"] for p in live]
    assert len(deleted) == 1, deleted
    said = [line for line in second.stdout.splitlines() if "upstream" in line]
    assert said == [f"1 project deleted upstream (id {deleted[0]}) is kept in cekura_raw, left out of analytics"], said


@pytest.mark.parametrize("name, width, want", [
    pytest.param("Insurance Verification Agent 12", 40, "Insurance Verification Agent 12", id="fits"),
    pytest.param("Insurance Verification and Eligibility Agent 12", 40,
                  "Insurance Verification and…lity Agent 12", id="cut-in-the-middle"),
])
def test_demo_summary_cuts_a_long_name_in_the_middle(name, width, want):
    from cekura_sessions.cli.demo import _fit

    assert len(want) <= width
    assert _fit(name, width) == want
