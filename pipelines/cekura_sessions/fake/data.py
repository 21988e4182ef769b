"""Deterministic fake Cekura data: projects and scenario-improvement sessions.

Everything comes from ``random.Random(spec.seed)`` and ``spec.as_of``, the day the data is "as
of" (a date, midnight UTC), never from the global random module or the wall clock, so one seed
and one day always yield equal data. The default day is fixed (2026-10-02), so tests can compute
what to expect; the demo and ``fake-api`` pass today, so "the last 30 days" finds the data.
Sessions are created over the 30 days that end a day before ``as_of`` (from the epoch,
``as_of`` - 31 days, 2026-09-01 by default); every timestamp is before ``as_of``, and each
``next_night`` moves that clock one day on. Moving ``as_of`` by n days moves every timestamp by
n days and changes nothing else.

Statuses follow age, as in a live account: a session created in the span's last day may still
be ``pending`` or ``in_progress`` (8% and 15%, like the rest of the enum's weights); an older one
has almost always finished (about 1% is left open: the stuck sessions a notebook should find).

Shapes follow Cekura's API (docs/upstream-behaviour.md): projects carry the full API shape (nested
organization and member records with emails, a webhook URL, a key-like ``vapi_api_key``) so
the pipeline has something real to drop; sessions carry exactly
``id, title, project, scenario_ids, status, created_at, updated_at, message_count``.

Oddities (``DataSpec.oddities=True``, the default). Fixed placements, by index into
``dataset.projects`` (P0..) and into that project's session list (s0..), so that every
oddity is present in ``generate(DataSpec())`` (6 projects x 40 sessions):

    P0  timezone America/New_York
        s0 project null | s1 scenario_ids null | s2 scenario_ids [] |
        s3 scenario_ids with a repeated id [a, b, a] | s4 message_count "12" (numeric string) |
        s5 message_count null
    P1  timezone Asia/Kolkata
        s0 created_at exactly epoch + 2 days 10:00:00Z, updated_at 20 minutes later (by default
           2026-09-03T10:00:00Z and 2026-09-03T10:20:00Z) |
        s1 both "+00:00" | s2 both "+05:30" | s3 both "-08:00" |
        s4 microseconds: created_at "...10.123456Z", updated_at "....654321+00:00" |
        s5 status "archived" (outside the enum) |
        s6 clock skew: updated_at 90 s BEFORE created_at (the only such session)
    P2  timezone Australia/Sydney, is_deleted true (it still has sessions)
    P3  timezone Pacific/Kiritimati
        s0 title of exactly 255 characters | s1 emoji title | s2 accented title | s3 CJK title
    P4  no "timezone" key at all; zero sessions (not deleted)
    P5  timezone "Mars/Olympus" (unknown to tz databases)
        s0 project null | s1 status "expired" (outside the enum)
    P6  timezone null (only when spec.projects >= 7: six projects cannot hold seven
        different timezone states)
    P7+ realistic timezones (UTC, Europe/London, America/Los_Angeles, ...)

On top of the placements, every session draws low-rate oddities: ``project`` null (2%),
``message_count`` as a numeric string (8%) or null (4%), ``scenario_ids`` null (1%) or empty
(2%), a non-ASCII title (2%), a status outside the enum (0.3%), and timestamps in a mix of
forms (``Z``, ``Z`` with microseconds, ``+00:00`` with and without microseconds, ``+05:30``,
``-08:00``). ``project`` is never a different project's id. Apart from the one skew session,
``updated_at >= created_at`` as instants. ``message_count`` is otherwise an int (the spec
declares a string; the live API's shape is not pinned down, so both appear).

With ``oddities=False`` the data is clean and uniform (benchmarks): every project has
``sessions_per_project`` sessions, valid timezones, nothing deleted; ``project`` always equals
the listed project, ``scenario_ids`` is a non-empty list of distinct ints, ``message_count``
an int, statuses from the enum, timestamps ``YYYY-MM-DDTHH:MM:SSZ``, ASCII titles.

Placements need the default sizes or larger: an index beyond a smaller spec is skipped.
"""

from __future__ import annotations

import bisect
import copy
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from itertools import accumulate
from typing import Any, Callable, TypeVar

T = TypeVar("T")

DEFAULT_AS_OF = date(2026, 10, 2)
SPAN_DAYS = 30
_SPAN_S = SPAN_DAYS * 86_400
_RECENT_S = 86_400  # a session created this close to the span's end may still be open
_US = 1_000_000

# Marks a project whose "timezone" key is left out (as opposed to present and null).
MISSING = object()

SESSION_KEYS = ("id", "title", "project", "scenario_ids", "status", "created_at", "updated_at", "message_count")
UNKNOWN_STATUSES = ("archived", "expired", "paused")
CHANGE_KINDS = (
    "status_moved",
    "list_shrunk",
    "list_reordered",
    "list_emptied",
    "deleted",
    "new",
    "project_emptied",
)

_STATUS_WEIGHTS = (("completed", 55), ("in_progress", 15), ("failed", 12), ("cancelled", 10), ("pending", 8))
# older sessions: the terminal statuses in the same proportions, and about 1% left open (stuck)
_SETTLED_WEIGHTS = (("completed", 55), ("in_progress", 0.5), ("failed", 12), ("cancelled", 10), ("pending", 0.3))
# Seconds between created_at and updated_at, per status; pending sessions were never touched.
_DURATIONS = {
    "completed": (120, 7_200),
    "failed": (30, 3_600),
    "cancelled": (10, 1_800),
    "in_progress": (0, 3_600),
    "pending": (0, 0),
}
_ODD_TIMEZONES = ("America/New_York", "Asia/Kolkata", "Australia/Sydney", "Pacific/Kiritimati", MISSING, "Mars/Olympus", None)
_PLAIN_TIMEZONES = (
    "UTC",
    "America/New_York",
    "Europe/London",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Europe/Berlin",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Asia/Tokyo",
)
_DELETED_INDEX = 2
_EMPTY_INDEX = 4
_SCENARIO_POOL = 60
_TOPICS = (
    "appointment booking", "refund requests", "insurance verification", "order tracking",
    "password reset", "billing disputes", "prescription refills", "delivery rescheduling",
    "account closure", "plan upgrades", "lost card", "callback scheduling",
)
_ACTIONS = ("Improve", "Tighten", "Harden", "Rework", "Clarify", "Extend", "Fix")
_PERSONAS = ("impatient callers", "elderly callers", "non-native speakers", "angry customers", "first-time users", "VIP accounts")
_NON_ASCII_TITLES = (
    "🚀 Improve booking flow 🎉",
    "Améliorer la réservation – café crème, naïve façade",
    "改进预约流程的场景测试",
    "Überprüfung der Rückerstattung für Kunden",
    "予約フローの改善 ✅",
)
_ORG_NAMES = ("Acme Health", "Globex Telecom", "Initech Insurance", "Umbrella Pharmacy", "Hooli Retail", "Stark Logistics")
_ROLES = ("admin", "member", "view_only", "internal_view", "labs", "labs_view_only", "insights_view")


@dataclass(frozen=True)
class DataSpec:
    projects: int = 6
    sessions_per_project: int = 40
    seed: int = 7
    mean_scenario_ids: float = 3.0
    oddities: bool = True  # include every spec oddity (False: clean, uniform data, used by benchmarks)
    as_of: date = DEFAULT_AS_OF  # the day (midnight UTC) the data is as of; every timestamp is before it
    # the id of the first organization (the others follow): another organisation's key serves other ids
    first_organization_id: int = 11

    @property
    def epoch(self) -> datetime:
        """Where the span of session creation starts: ``as_of`` - 31 days, midnight UTC."""
        return datetime.combine(self.as_of, time(0), tzinfo=timezone.utc) - timedelta(days=SPAN_DAYS + 1)


@dataclass
class FakeDataset:
    projects: list[dict]  # exactly what /user/v1/projects/ returns (full API shape)
    sessions: dict[int, list[dict]]  # project id -> list of session dicts exactly as served
    spec: DataSpec = field(default_factory=DataSpec)
    next_session_id: int = 1  # ids are never reused, not even after a deletion
    as_of: datetime = datetime.combine(DEFAULT_AS_OF, time(0), tzinfo=timezone.utc)  # every timestamp is before this
    last_changes: dict[str, list[int]] = field(default_factory=dict)  # what next_night changed
    # the detail endpoint (fake/conversations.py): sessions listed whose detail answers 404 (deleted
    # between listing and detail), sessions whose history is empty, and conversations next_night
    # shrank (id -> (the updated_at they were cut for, messages kept)); `conversations_shrunk`
    # lists the ids the last next_night shrank
    details_gone: set[int] = field(default_factory=set)
    empty_histories: set[int] = field(default_factory=set)
    conversation_cuts: dict[int, tuple[str, int]] = field(default_factory=dict)
    conversations_shrunk: list[int] = field(default_factory=list)

    def project(self, project_id: int) -> dict:
        for project in self.projects:
            if project.get("id") == project_id:
                return project
        raise KeyError(f"unknown project {project_id}")

    def all_sessions(self) -> list[tuple[int, dict]]:
        """(listed project id, session) in listing order, project by project."""
        return [(pid, s) for pid, rows in self.sessions.items() for s in rows]

    def session(self, session_id: int) -> dict | None:
        """The listed session with this id, or None."""
        for rows in self.sessions.values():
            for s in rows:
                if s.get("id") == session_id:
                    return s
        return None

    def detail(self, session_id: int) -> dict | None:
        """What the detail endpoint answers for this id (fake/conversations.py), or None (404):
        an id no listing holds, or a session deleted between its listing and its detail."""
        return self.detail_of(self.session(session_id) if session_id not in self.details_gone else None)

    def detail_of(self, session: dict | None) -> dict | None:
        """detail() of a session already looked up (the server keeps an index by id)."""
        from cekura_sessions.fake.conversations import detail

        if session is None or session.get("id") in self.details_gone:
            return None
        return detail(self.spec, session, self.conversation_cuts, self.empty_histories)

    def next_night(self, seed: int) -> FakeDataset:
        """A changed deep copy, as if a night went by; deterministic per seed.

        One live project (not deleted, with sessions) drops to zero sessions; in the other live
        projects some statuses move, some scenario_ids lists shrink / reorder / empty, some
        sessions are deleted, and new sessions appear with fresh ids. Every touched session's
        updated_at moves into the new night. Each kind happens at least once when the data
        allows it; ``last_changes`` lists the affected session ids (project ids for
        ``project_emptied``). Deleted projects are left alone.
        """
        night = _Night(random.Random(seed), self)
        return night.run()


# --- timestamps -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TsForm:
    suffix: str
    offset: timedelta
    micros: bool


_Z = _TsForm("Z", timedelta(0), False)
_Z_MICRO = _TsForm("Z", timedelta(0), True)
_UTC = _TsForm("+00:00", timedelta(0), False)
_UTC_MICRO = _TsForm("+00:00", timedelta(0), True)
_IST = _TsForm("+05:30", timedelta(hours=5, minutes=30), False)
_PST = _TsForm("-08:00", timedelta(hours=-8), False)
_FORM_WEIGHTS = ((_Z, 70), (_Z_MICRO, 12), (_UTC, 6), (_UTC_MICRO, 4), (_IST, 4), (_PST, 4))


def _format(dt: datetime, form: _TsForm) -> str:
    """ISO-8601 text of a naive-UTC instant, shown in the form's offset."""
    return (dt + form.offset).isoformat() + form.suffix


def _format_us(epoch: datetime, us: int, form: _TsForm) -> str:
    """_format of an instant given in microseconds since the (naive-UTC) epoch (the hot path)."""
    return (epoch + timedelta(microseconds=us) + form.offset).isoformat() + form.suffix


def parse_ts(text: str) -> datetime:
    """Aware datetime of any form used here (Python 3.11 reads the trailing Z)."""
    return datetime.fromisoformat(text)


def _instants(rng: random.Random, created_s: int, duration_s: int, c_form: _TsForm, u_form: _TsForm) -> tuple[int, int]:
    """created/updated in microseconds since the epoch, with updated >= created once formatted.

    A form without microseconds must get a whole-second instant (isoformat would otherwise
    print them), and a truncated updated_at could then fall before a fractional created_at:
    round such an updated_at up instead.
    """
    created = created_s * _US + (_between(rng, 1, _US - 1) if c_form.micros else 0)
    updated = created + duration_s * _US
    if u_form.micros:
        updated += _between(rng, 1, _US - 1)
        if updated % _US == 0:
            updated += 1
    elif updated % _US:
        updated += _US - updated % _US
    return created, updated


# --- random picks -----------------------------------------------------------------------------
# The hot loop makes ~10 draws per session; random.randint/choice/sample cost 3-5x more than
# one rng.random() each, which matters at benchmark scale (200k sessions).


def _below(rng: random.Random, n: int) -> int:
    return int(rng.random() * n)


def _between(rng: random.Random, lo: int, hi: int) -> int:
    """Like randint(lo, hi), inclusive."""
    return lo + int(rng.random() * (hi - lo + 1))


def _one_of(rng: random.Random, values: tuple[T, ...]) -> T:
    return values[int(rng.random() * len(values))]



class _Weighted:
    """Weighted choice with precomputed cumulative weights (random.choices is slower per call)."""

    def __init__(self, table: tuple[tuple[T, float], ...]) -> None:
        self.values = [v for v, _ in table]
        self.cum = list(accumulate(w for _, w in table))
        self.total = self.cum[-1]

    def pick(self, rng: random.Random) -> Any:
        return self.values[bisect.bisect_right(self.cum, rng.random() * self.total)]


_STATUSES = _Weighted(_STATUS_WEIGHTS)
_SETTLED = _Weighted(_SETTLED_WEIGHTS)
_FORMS = _Weighted(_FORM_WEIGHTS)


# --- sessions ---------------------------------------------------------------------------------


def _pool_base(project_id: int) -> int:
    """First id of the project's scenario pool: stable per project so nights agree."""
    return (project_id * 7_919) % (5_000 - _SCENARIO_POOL) + 1


def _scenario_ids(rng: random.Random, base: int, mean: float, odd: bool) -> list[int] | None:
    if odd:
        r = rng.random()
        if r < 0.01:
            return None
        if r < 0.03:
            return []
    if mean <= 0:
        return []
    n = min(_SCENARIO_POOL, int(rng.random() * (2 * mean - 1)) + 1)
    ids: list[int] = []
    while len(ids) < n:
        value = base + _below(rng, _SCENARIO_POOL)
        if value not in ids:
            ids.append(value)
    return ids


def _title(rng: random.Random, odd: bool) -> str:
    if odd and rng.random() < 0.02:
        return _one_of(rng, _NON_ASCII_TITLES)
    return f"{_one_of(rng, _ACTIONS)} {_one_of(rng, _TOPICS)} for {_one_of(rng, _PERSONAS)}"


def _message_count(rng: random.Random, status: str, odd: bool) -> int | str | None:
    n = _below(rng, 2) if status == "pending" else _between(rng, 2, 60)
    if odd:
        r = rng.random()
        if r < 0.08:
            return str(n)
        if r < 0.12:
            return None
    return n


def _status(rng: random.Random, odd: bool, recent: bool) -> str:
    if odd and rng.random() < 0.003:
        return _one_of(rng, UNKNOWN_STATUSES)
    return (_STATUSES if recent else _SETTLED).pick(rng)


def _new_session(rng: random.Random, sid: int, pid: int, created_s: int, spec: DataSpec, epoch: datetime) -> dict:
    """A session created `created_s` seconds after `epoch` (naive UTC); one created in the span's
    last day (or later, in a next night) may still be open."""
    odd = spec.oddities
    status = _status(rng, odd, recent=created_s >= _SPAN_S - _RECENT_S)
    lo, hi = _DURATIONS.get(status, (60, 7_200))
    duration = _between(rng, lo, hi) if hi else 0
    c_form = _FORMS.pick(rng) if odd else _Z
    u_form = _FORMS.pick(rng) if odd else _Z
    created, updated = _instants(rng, created_s, duration, c_form, u_form)
    return {
        "id": sid,
        "title": _title(rng, odd),
        "project": None if odd and rng.random() < 0.02 else pid,
        "scenario_ids": _scenario_ids(rng, _pool_base(pid), spec.mean_scenario_ids, odd),
        "status": status,
        "created_at": _format_us(epoch, created, c_form),
        "updated_at": _format_us(epoch, updated, u_form),
        "message_count": _message_count(rng, status, odd),
    }


def _project_sessions(rng: random.Random, pid: int, first_id: int, count: int, spec: DataSpec) -> tuple[list[dict], int]:
    """count sessions spread over the span in id order; ids leave small gaps (deleted upstream)."""
    rows = []
    sid = first_id
    step = _SPAN_S / max(count, 1)
    epoch = spec.epoch.replace(tzinfo=None)
    for i in range(count):
        created_s = int(i * step + rng.random() * step)
        rows.append(_new_session(rng, sid, pid, created_s, spec, epoch))
        sid += 1 if rng.random() < 0.8 else _between(rng, 2, 4)
    return rows, sid


# --- projects ---------------------------------------------------------------------------------


class _People:
    """Hands out users person{n}@example.com and membership ids, in order."""

    def __init__(self) -> None:
        self.user_n = 0
        self.membership_id = 500

    def membership(self, rng: random.Random, user: dict, at: str) -> dict:
        self.membership_id += 1
        return {
            "id": self.membership_id,
            "user": dict(user),
            "role": rng.choice(_ROLES[:3]) if rng.random() < 0.9 else rng.choice(_ROLES),
            "is_email_notify_enabled": rng.random() < 0.5,
            "created_at": at,
            "updated_at": at,
        }

    def user(self) -> dict:
        self.user_n += 1
        n = self.user_n
        return {"id": 9_000 + n, "name": f"Person {n}", "email": f"person{n}@example.com"}


def _past(rng: random.Random, epoch: datetime, min_days: int, max_days: int) -> datetime:
    return epoch - timedelta(seconds=rng.randint(min_days * 86_400, max_days * 86_400))


def _organizations(rng: random.Random, count: int, people: _People, epoch: datetime,
                   first_id: int = 11) -> list[tuple[dict, list[dict]]]:
    """(organization dict, its users) for each organization."""
    orgs = []
    for k in range(count):
        created = _past(rng, epoch, 300, 700)
        at = _format(created, _Z_MICRO if rng.random() < 0.5 else _Z)
        users = [people.user() for _ in range(rng.randint(2, 4))]
        org = {
            "id": first_id + k,
            "name": f"{_ORG_NAMES[k % len(_ORG_NAMES)]}{'' if k < len(_ORG_NAMES) else f' {k}'}",
            "members": [people.membership(rng, u, at) for u in users],
            "created_at": at,
            "updated_at": _format(created + timedelta(days=rng.randint(1, 200)), _Z),
        }
        orgs.append((org, users))
    return orgs


def _timezone_state(index: int, oddities: bool) -> object:
    if oddities and index < len(_ODD_TIMEZONES):
        return _ODD_TIMEZONES[index]
    return _PLAIN_TIMEZONES[index % len(_PLAIN_TIMEZONES)]


def _make_project(
    rng: random.Random, index: int, pid: int, org: tuple[dict, list[dict]], people: _People, spec: DataSpec
) -> dict:
    org_dict, users = org
    created = _past(rng, spec.epoch.replace(tzinfo=None), 30, 280)
    at = _format(created, _Z_MICRO)
    project: dict[str, Any] = {
        "id": pid,
        "name": f"{rng.choice(_TOPICS).title()} Agent {index + 1}",
        "organization": copy.deepcopy(org_dict),
        "members": [people.membership(rng, u, at) for u in rng.sample(users, rng.randint(1, len(users)))],
        "outbound_timeout": 300,
        "max_call_duration": rng.choice((300, 600, 900)),
        "min_call_duration": 30,
        "sample_rate": rng.choice((1.0, 0.5, 0.1)),
        "webhook_url": f"https://hooks.example.com/cekura/{pid}",
        "webhook_secret_configured": rng.random() < 0.5,
        "end_call_enabled": rng.random() < 0.7,
        "notify_daily_report": rng.random() < 0.5,
        "is_send_emails_enabled": rng.random() < 0.8,
        "frequent_calls_threshold": rng.randint(3, 10),
        "daily_report_dashboard_ids": [],
        "timezone": None,
        "vapi_api_key": f"vapi_sk_live_{rng.getrandbits(128):032x}",
        "is_deleted": spec.oddities and index == _DELETED_INDEX,
        "created_at": at,
        "updated_at": _format(created + timedelta(days=rng.randint(0, 25), seconds=rng.randint(0, 86_399)), _Z_MICRO),
    }
    tz = _timezone_state(index, spec.oddities)
    if tz is MISSING:
        del project["timezone"]
    else:
        project["timezone"] = tz
    return project


# --- placements -------------------------------------------------------------------------------

_Change = Callable[[dict, int, datetime], None]  # (session, listed project id, naive-UTC epoch)


def _retime(s: dict, created: datetime, updated: datetime, c_form: _TsForm, u_form: _TsForm) -> None:
    s["created_at"] = _format(created, c_form)
    s["updated_at"] = _format(updated, u_form)


def _whole(text: str) -> datetime:
    """Naive-UTC instant of a timestamp, floored to the second."""
    return parse_ts(text).astimezone(timezone.utc).replace(tzinfo=None, microsecond=0)


def _same_instants(form: _TsForm) -> _Change:
    def apply(s: dict, pid: int, epoch: datetime) -> None:
        _retime(s, _whole(s["created_at"]), _whole(s["updated_at"]), form, form)

    return apply


def _exact_example(s: dict, pid: int, epoch: datetime) -> None:
    s["status"] = "completed"
    created = epoch + timedelta(days=2, hours=10)
    _retime(s, created, created + timedelta(minutes=20), _Z, _Z)


def _with_micros(s: dict, pid: int, epoch: datetime) -> None:
    created = _whole(s["created_at"]).replace(second=10, microsecond=123_456)
    updated = created.replace(microsecond=0) + timedelta(minutes=7, microseconds=654_321)
    _retime(s, created, updated, _Z_MICRO, _UTC_MICRO)


def _clock_skew(s: dict, pid: int, epoch: datetime) -> None:
    created = _whole(s["created_at"])
    _retime(s, created, created - timedelta(seconds=90), _Z, _Z)


def _repeated_ids(s: dict, pid: int, epoch: datetime) -> None:
    base = _pool_base(pid)
    s["scenario_ids"] = [base + 3, base + 17, base + 3]


def _long_title(s: dict, pid: int, epoch: datetime) -> None:
    head = "Improve appointment booking for callers who change their mind halfway through; "
    s["title"] = (head * 4)[:255]


def _setter(key: str, value: Any) -> _Change:
    def apply(s: dict, pid: int, epoch: datetime) -> None:
        s[key] = copy.copy(value)

    return apply


# (project index, session index, change); order matters where two touch one session.
_PLACEMENTS: tuple[tuple[int, int, _Change], ...] = (
    (0, 0, _setter("project", None)),
    (0, 1, _setter("scenario_ids", None)),
    (0, 2, _setter("scenario_ids", [])),
    (0, 3, _repeated_ids),
    (0, 4, _setter("message_count", "12")),
    (0, 5, _setter("message_count", None)),
    (1, 0, _exact_example),
    (1, 1, _same_instants(_UTC)),
    (1, 2, _same_instants(_IST)),
    (1, 3, _same_instants(_PST)),
    (1, 4, _with_micros),
    (1, 5, _setter("status", "archived")),
    (1, 6, _clock_skew),
    (3, 0, _long_title),
    (3, 1, _setter("title", _NON_ASCII_TITLES[0])),
    (3, 2, _setter("title", _NON_ASCII_TITLES[1])),
    (3, 3, _setter("title", _NON_ASCII_TITLES[2])),
    (5, 0, _setter("project", None)),
    (5, 1, _setter("status", "expired")),
)


def _apply_placements(dataset: FakeDataset) -> None:
    epoch = dataset.spec.epoch.replace(tzinfo=None)
    for p_index, s_index, change in _PLACEMENTS:
        if p_index >= len(dataset.projects):
            continue
        pid = dataset.projects[p_index]["id"]
        rows = dataset.sessions[pid]
        if s_index < len(rows):
            change(rows[s_index], pid, epoch)


# --- generate ---------------------------------------------------------------------------------


def generate(spec: DataSpec) -> FakeDataset:
    """Projects and sessions for a spec; equal specs give equal datasets."""
    rng = random.Random(spec.seed)
    people = _People()
    orgs = _organizations(rng, 1 + max(spec.projects - 1, 0) // 8, people, spec.epoch.replace(tzinfo=None),
                          spec.first_organization_id)
    projects: list[dict] = []
    sessions: dict[int, list[dict]] = {}
    pid = 100
    sid = 10_001
    for index in range(spec.projects):
        pid += rng.randint(1, 4)
        projects.append(_make_project(rng, index, pid, orgs[index % len(orgs)], people, spec))
        count = 0 if spec.oddities and index == _EMPTY_INDEX else spec.sessions_per_project
        sessions[pid], sid = _project_sessions(rng, pid, sid, count, spec)
    as_of = spec.epoch + timedelta(days=SPAN_DAYS + 1)
    dataset = FakeDataset(projects, sessions, spec=spec, next_session_id=sid, as_of=as_of)
    if spec.oddities:
        _apply_placements(dataset)
        _place_detail_oddities(dataset)
    return dataset


def _place_detail_oddities(dataset: FakeDataset) -> None:
    """P0 s6: listed, but its detail answers 404; P0 s7: an empty conversation history."""
    rows = dataset.sessions[dataset.projects[0]["id"]] if dataset.projects else []
    if len(rows) > 7:
        dataset.details_gone.add(rows[6]["id"])
        dataset.empty_histories.add(rows[7]["id"])


# --- next night -------------------------------------------------------------------------------


def _copy_session(s: dict) -> dict:
    copied = dict(s)
    if isinstance(copied["scenario_ids"], list):
        copied["scenario_ids"] = list(copied["scenario_ids"])
    return copied


def _can_shrink(s: dict) -> bool:
    ids = s["scenario_ids"]
    return isinstance(ids, list) and len(ids) >= 2


def _can_reorder(s: dict) -> bool:
    ids = s["scenario_ids"]
    return isinstance(ids, list) and len(ids) >= 2 and len(set(ids)) == len(ids)


def _can_empty(s: dict) -> bool:
    ids = s["scenario_ids"]
    return isinstance(ids, list) and len(ids) >= 1


_MOVES = {
    "pending": _Weighted((("in_progress", 60), ("completed", 30), ("cancelled", 10))),
    "in_progress": _Weighted((("completed", 70), ("failed", 20), ("cancelled", 10))),
}
# Random share per session and night; the guaranteed one of each kind comes on top.
_RATES = (("deleted", 0.02), ("list_shrunk", 0.02), ("list_reordered", 0.02), ("list_emptied", 0.02))
_ELIGIBLE: dict[str, Callable[[dict], bool]] = {
    "deleted": lambda s: True,
    "list_shrunk": _can_shrink,
    "list_reordered": _can_reorder,
    "list_emptied": _can_empty,
    "status_moved": lambda s: True,
}


class _Night:
    """One night's changes to a copy of a dataset."""

    def __init__(self, rng: random.Random, base: FakeDataset) -> None:
        self.rng = rng
        self.base = base
        self.start = base.as_of
        self.end = base.as_of + timedelta(days=1)
        self.next_id = base.next_session_id
        self.changes: dict[str, list[int]] = {k: [] for k in CHANGE_KINDS}
        self.projects = copy.deepcopy(base.projects)
        self.sessions = {pid: [_copy_session(s) for s in rows] for pid, rows in base.sessions.items()}

    def run(self) -> FakeDataset:
        live = [p["id"] for p in self.projects if not p.get("is_deleted") and self.sessions.get(p["id"])]
        if live:
            dropped = live.pop(self.rng.randrange(len(live)))
            self.sessions[dropped] = []
            self.changes["project_emptied"].append(dropped)
        touched: set[int] = set()
        for pid in live:
            self.sessions[pid] = [s for s in self.sessions[pid] if self._random_change(s, touched)]
        for kind in ("deleted", "list_shrunk", "list_reordered", "list_emptied", "status_moved"):
            if not self.changes[kind]:
                self._forced_change(kind, live, touched)
        self._new_sessions(live)
        night = FakeDataset(
            self.projects,
            self.sessions,
            spec=self.base.spec,
            next_session_id=self.next_id,
            as_of=self.end,
            last_changes=self.changes,
            details_gone=set(self.base.details_gone),
            empty_histories=set(self.base.empty_histories),
            conversation_cuts=dict(self.base.conversation_cuts),
        )
        self._shrink_conversations(night, touched)
        return night

    def _shrink_conversations(self, night: FakeDataset, touched: set[int]) -> None:
        """One touched session in ten (at least one) keeps at most half of yesterday's messages."""
        from cekura_sessions.fake.conversations import detail

        base = self.base
        yesterday = {s["id"]: s for rows in base.sessions.values() for s in rows if s["id"] in touched}
        candidates = []
        for s in (s for rows in night.sessions.values() for s in rows if s["id"] in yesterday):
            if s["id"] in base.details_gone:
                continue
            length = len(detail(base.spec, yesterday[s["id"]], base.conversation_cuts, base.empty_histories)["conversation_history"])
            if length >= 2:
                candidates.append((s, length))
        for n, (s, length) in enumerate(candidates):
            if n == 0 or self.rng.random() < 0.1:
                night.conversation_cuts[s["id"]] = (s["updated_at"], length // 2)
                night.conversations_shrunk.append(s["id"])

    def _random_change(self, s: dict, touched: set[int]) -> bool:
        """Maybe change one session; False means it was deleted."""
        r = self.rng.random()
        for kind, rate in _RATES:
            if r < rate:
                if _ELIGIBLE[kind](s):
                    return self._apply(kind, s, touched)
                break
            r -= rate
        if s["status"] in _MOVES and self.rng.random() < 0.5:
            self._apply("status_moved", s, touched)
        return True

    def _forced_change(self, kind: str, live: list[int], touched: set[int]) -> None:
        """Guarantee one change of a kind: first eligible untouched session from a random start."""
        rows = [(pid, i) for pid in live for i in range(len(self.sessions[pid]))]
        if not rows:
            return
        start = self.rng.randrange(len(rows))
        prefer = (lambda s: s["status"] in _MOVES) if kind == "status_moved" else _ELIGIBLE[kind]
        for check in (prefer, _ELIGIBLE[kind]):
            for pid, i in rows[start:] + rows[:start]:
                s = self.sessions[pid][i]
                if s["id"] not in touched and check(s):
                    if not self._apply(kind, s, touched):
                        del self.sessions[pid][i]
                    return

    def _apply(self, kind: str, s: dict, touched: set[int]) -> bool:
        touched.add(s["id"])
        self.changes[kind].append(s["id"])
        ids = s["scenario_ids"]
        if kind == "deleted":
            return False
        if kind == "list_shrunk":
            s["scenario_ids"] = ids[:-1]
        elif kind == "list_reordered":
            s["scenario_ids"] = ids[1:] + ids[:1]
        elif kind == "list_emptied":
            s["scenario_ids"] = []
        else:
            self._move_status(s)
        s["updated_at"] = _format(self._moment(), _Z)
        return True

    def _move_status(self, s: dict) -> None:
        mover = _MOVES.get(s["status"])
        # A terminal (or unknown) status only moves when forced: the session is re-run.
        s["status"] = mover.pick(self.rng) if mover else "in_progress"
        if isinstance(s["message_count"], int):
            s["message_count"] += self.rng.randint(1, 12)

    def _moment(self) -> datetime:
        """A whole-second instant inside the night, after every earlier timestamp."""
        seconds = self.rng.randint(60, 86_400 - 3_600)
        return (self.start + timedelta(seconds=seconds)).replace(tzinfo=None, microsecond=0)

    def _new_sessions(self, live: list[int]) -> None:
        epoch = self.base.spec.epoch
        offset_s = int((self.start - epoch).total_seconds())
        for n, pid in enumerate(live):
            for _ in range(self.rng.randint(1 if n == 0 else 0, 2)):
                created_s = offset_s + self.rng.randint(60, 86_400 - 3 * 3_600)
                s = _new_session(self.rng, self.next_id, pid, created_s, self.base.spec, epoch.replace(tzinfo=None))
                self.sessions[pid].append(s)
                self.changes["new"].append(self.next_id)
                self.next_id += self.rng.randint(1, 3)
