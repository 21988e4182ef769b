"""A session's detail as the fake serves it (`GET .../scenario-improvement-sessions/{id}/`):
the listed fields plus `created_by` and `conversation_history`, made from the same data.

A conversation is a function of the seed, the session's id and its `updated_at`, and nothing
else (no state kept per session): a session that did not change answers the same history every
night, and one whose `updated_at` moved (fake/data.py `next_night`) answers a new one. The one
exception is a cut (`FakeDataset.conversation_cuts`): `next_night` shrinks some conversations,
so a pipeline that re-reads them must leave no stale messages.

Oddities (`DataSpec.oddities=True`), drawn per message at low rates, and placed
(`FakeDataset.empty_histories`, `details_gone`):
    a timestamp missing (no key), null, not a timestamp ("yesterday", month 13), or in another
    offset (`+05:30`, microseconds); `content` missing or null, emoji in it; `tool_calls`
    missing, null, or a list of 1..3 calls; a role other than user/assistant (`system`,
    `tool`), or a conversation that starts with the assistant; `created_by` null;
    an empty history; a session deleted between its listing and its detail (404).
With `oddities=False` (benchmarks): alternating user/assistant messages, every field present,
`Z` timestamps.

Every content holds a `ref` token of 12 hex digits drawn from the seed: unique per message, so a
test can look for one message's text anywhere on disk (the canary).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

_US = 1_000_000
_PHRASES = (
    "The caller wants to move the appointment to next Tuesday",
    "Please check the refund for order",
    "Can you verify my insurance before the visit",
    "My card was lost, block it now",
    "I need to reschedule the delivery",
    "Why was I billed twice this month",
)
_REPLIES = (
    "I have updated the scenario so the agent confirms the new slot",
    "The agent now asks for the order number before looking it up",
    "I added a step that reads back the policy number",
    "The flow now escalates to a human after two failed attempts",
    "Done: the agent offers the next three free slots",
)
_EMOJI = ("🙂", "🚀", "✅", "😡")
_TOOLS = ("search_scenarios", "update_scenario", "run_simulation", "fetch_transcript")
_ODD_TIMES = ("yesterday", "2026-13-45T10:00:00Z", "", "10:15")


def detail(spec: Any, session: dict, cuts: dict[int, tuple[str, int]], empty: set[int]) -> dict:
    """The detail of one listed session: its listed fields (as served), `created_by` (int or
    null) and `conversation_history` (a list of message objects)."""
    history = conversation(spec.seed, session, spec.oddities) if session["id"] not in empty else []
    cut = cuts.get(session["id"])
    if cut is not None and cut[0] == session["updated_at"]:
        history = history[: cut[1]]
    rng = random.Random(f"{spec.seed}:{session['id']}:creator")
    created_by = None if spec.oddities and rng.random() < 0.15 else 9_001 + int(rng.random() * 12)
    body = {k: v for k, v in session.items() if k != "message_count"}
    return {**body, "created_by": created_by, "conversation_history": history}


def conversation(seed: int, session: dict, odd: bool) -> list[dict]:
    """The conversation of a session as of its `updated_at`: 0..40 messages, timestamped in
    order between `created_at` and `updated_at`."""
    rng = random.Random(f"{seed}:{session['id']}:{session['updated_at']}")
    start, end = _instant(session["created_at"]), _instant(session["updated_at"])
    count = _length(rng, session.get("status"))
    span_us = max(int((end - start).total_seconds() * _US), 0)
    offsets = sorted(int(rng.random() * span_us) for _ in range(count))
    assistant_first = odd and rng.random() < 0.05
    messages = []
    for position, offset in enumerate(offsets):
        role = "assistant" if (position % 2 == 1) != assistant_first else "user"
        if odd and rng.random() < 0.01:
            role = "system" if rng.random() < 0.5 else "tool"
        messages.append(_message(rng, role, start + timedelta(microseconds=offset), odd))
    return messages


def _length(rng: random.Random, status: Any) -> int:
    if status == "pending":
        return int(rng.random() * 3)
    r = rng.random()
    if r < 0.7:
        return 2 + int(rng.random() * 11)  # 2..12
    if r < 0.95:
        return 13 + int(rng.random() * 12)  # 13..24
    return 25 + int(rng.random() * 16)  # 25..40: the long tail


def _message(rng: random.Random, role: str, at: datetime, odd: bool) -> dict:
    message: dict[str, Any] = {"role": role}
    token = f"ref {rng.getrandbits(48):012x}"
    text = rng.choice(_REPLIES if role == "assistant" else _PHRASES)
    r = rng.random()
    if odd and r < 0.02:
        pass  # no content key
    elif odd and r < 0.03:
        message["content"] = None
    else:
        emoji = rng.choice(_EMOJI) + " " if odd and rng.random() < 0.1 else ""
        message["content"] = f"{emoji}{text} ({token})"
    timestamp = _timestamp(rng, at, odd)
    if timestamp is not _ABSENT:
        message["timestamp"] = timestamp
    if role == "assistant":
        r = rng.random()
        if odd and r < 0.03:
            pass  # no tool_calls key
        elif odd and r < 0.05:
            message["tool_calls"] = None
        elif r < 0.35:
            message["tool_calls"] = [
                {"name": rng.choice(_TOOLS), "arguments": {"step": n}} for n in range(1 + int(rng.random() * 3))
            ]
        else:
            message["tool_calls"] = []
    elif not odd:
        message["tool_calls"] = []
    return message


_ABSENT = object()


def _timestamp(rng: random.Random, at: datetime, odd: bool) -> Any:
    if not odd:
        return at.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = rng.random()
    if r < 0.03:
        return _ABSENT
    if r < 0.05:
        return None
    if r < 0.06:
        return rng.choice(_ODD_TIMES)
    if r < 0.10:
        return (at + timedelta(hours=5, minutes=30)).replace(tzinfo=None).isoformat() + "+05:30"
    if r < 0.20:
        return at.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return at.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def _instant(text: str) -> datetime:
    """The aware UTC instant of a listed timestamp (every listed form reads with fromisoformat);
    a test's broken timestamp gives a fixed instant rather than a server error."""
    try:
        return datetime.fromisoformat(text).astimezone(timezone.utc)
    except (TypeError, ValueError):
        return datetime(2026, 1, 1, tzinfo=timezone.utc)
