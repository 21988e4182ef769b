"""One dataset holds one organisation: a key of another is refused before anything is loaded.

An API key is scoped to its organisation: `/user/v1/projects/` lists that organisation's projects
only (cekura-api's `projects_list`: "scoped by the caller's API-key org"). Loaded into a dataset
that holds another organisation, its projects list would mark every stored project unlisted, and
the models would drop them (720 sessions -> 120, exit 0). So when none of the organisations the
key lists is one the dataset holds, the night stops (exit 2) with one line suggesting a dataset
of its own (`--dataset`).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from cekura_sessions.api.errors import ConfigError
from cekura_sessions.extract import contract

_ID = contract.PROJECTS.names.index("organization_id")
_NAME = contract.PROJECTS.names.index("organization_name")


class OtherOrganisation(ConfigError):
    """The key's organisation is not the one the dataset was loaded with; the message names both
    and says to pass --dataset."""


def check_organisation(listed: pa.Table, stored: dict[int, tuple[Any, ...]], dataset: str) -> None:
    """Raises OtherOrganisation when the projects `listed` (projects_table's shape) belong only to
    organisations that none of the `stored` projects (NightState.projects) belongs to. Nothing is
    compared when either side names no organisation (a fresh dataset, an empty list, a list or
    a database without the field)."""
    stored_orgs = {row[_ID]: row[_NAME] for row in stored.values() if row[_ID] is not None}
    listed_orgs = {org: name for org, name in zip(listed.column("organization_id").to_pylist(),
                                                  listed.column("organization_name").to_pylist()) if org is not None}
    if not stored_orgs or not listed_orgs or stored_orgs.keys() & listed_orgs.keys():
        return
    raise OtherOrganisation(
        f"this key belongs to {_named(listed_orgs)}, but dataset {dataset} holds {_named(stored_orgs)}; nothing was "
        f"loaded: load this key into a dataset of its own with --dataset NAME (or CEKURA_DATASET), e.g. "
        f"--dataset {_suggested(listed_orgs)}")


def _named(orgs: dict[int, Any]) -> str:
    shown = [f"{name!r} (id {org})" if name else f"id {org}" for org, name in sorted(orgs.items())]
    return ("organisation " if len(shown) == 1 else "organisations ") + ", ".join(shown)


def _suggested(orgs: dict[int, Any]) -> str:
    """A dataset name for the key: `cekura_org_<its organisation's id>` (always a valid name)."""
    return f"cekura_org_{min(orgs)}"
