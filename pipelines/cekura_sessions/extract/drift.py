"""Type drift read as what it means: values the API changed the JSON type of without changing
their meaning, put back before the contract judges a row.

APIs turn integer ids into strings without a version change (Mastodon's and Mautic's did, to
keep ids exact in JavaScript), and some encode a list as a JSON string. A string that holds an
integer is that integer; a string that holds a JSON list of integers is that list. Anything
else (a fractional id, an object) is left as delivered, and the contract sets the row aside
with its reason (extract/contract.py session_rejection).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from cekura_sessions.extract import contract

# an integer as text: what JavaScript-safe APIs send ids as; no sign but "-", no spaces, no "+"
_INTEGER_TEXT = re.compile(r"-?(0|[1-9][0-9]*)")

_SESSION_INTEGERS = ("id", "project")
_PROJECT_INTEGERS = ("id", "organization_id")


def integer_from_text(value: Any) -> Any:
    """`value` as an int when it is a string holding a BIGINT integer, else `value` itself."""
    if type(value) is str and _INTEGER_TEXT.fullmatch(value):
        number = int(value)
        if contract.BIGINT_MIN <= number <= contract.BIGINT_MAX:
            return number
    return value


def coerce_session(row: Any) -> int:
    """Put a delivered session's drifted values back in place (a dict, changed in place): `id`
    and `project` as text, `scenario_ids` as a JSON string or with elements as text. Returns how
    many values were put back (0 for a row that is not a JSON object)."""
    if type(row) is not dict:
        return 0
    changed = _integers(row, _SESSION_INTEGERS)
    scenario_ids = row.get("scenario_ids")
    if type(scenario_ids) is str:
        try:
            parsed = orjson.loads(scenario_ids)
        except orjson.JSONDecodeError:
            parsed = None
        if type(parsed) is list:
            row["scenario_ids"] = scenario_ids = parsed
            changed += 1
    if type(scenario_ids) is list and any(type(v) is str for v in scenario_ids):
        values = [integer_from_text(v) for v in scenario_ids]
        changed += sum(a is not b for a, b in zip(values, scenario_ids))
        row["scenario_ids"] = values
    return changed


def coerce_project(row: Any) -> int:
    """The same for a project of /user/v1/projects/: `id`, `organization_id` and the nested
    `organization.id` as text. Returns how many values were put back."""
    if type(row) is not dict:
        return 0
    changed = _integers(row, _PROJECT_INTEGERS)
    if type(row.get("organization")) is dict:
        organization = dict(row["organization"])  # the caller's nested dict stays as delivered
        moved = _integers(organization, ("id",))
        if moved:
            row["organization"] = organization
            changed += moved
    return changed


def _integers(row: dict[str, Any], names: tuple[str, ...]) -> int:
    changed = 0
    for name in names:
        value = row.get(name)
        if type(value) is str:
            number = integer_from_text(value)
            if number is not value:
                row[name] = number
                changed += 1
    return changed
