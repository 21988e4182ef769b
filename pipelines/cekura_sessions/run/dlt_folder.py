"""dlt's folder is disposable: a damaged state or schema file in `<db>.dlt/` is set aside
(renamed, never deleted, so it can be looked at) before dlt opens the folder, and dlt rebuilds
it from the database in the same run (it restores its state and schemas from the destination
when the folder has none).

A full disk or a crash while dlt writes leaves `state.json` empty or cut short; dlt then fails
every night with a bare JSONDecodeError that names no file, and never heals. Nothing that
matters lives only in this folder: the digests, the history and the run ledger are in the
database (run/stored.py, run/bookkeeping.py).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
SCHEMAS_FOLDER = "schemas"
SCHEMA_SUFFIX = ".schema.json"
# beside the pipeline's folder, not in it: dlt wipes the pipeline's folder when it has no state
DAMAGED_FOLDER = "damaged"


def set_aside_damaged(working_dir: Path) -> list[Path]:
    """Move each state or schema file of dlt's pipeline folder `working_dir` that is empty, not
    JSON, or not a JSON object to `<working_dir>/../damaged/` (its name, then the UTC time), with
    one warning naming it; returns the new paths. A damaged schema takes the state with it: a
    state that names a schema dlt cannot find fails the run, and without either dlt restores
    both from the database. A file that does not exist is left to dlt (it builds a new one).
    Raises nothing: a file that cannot be read or moved is left for dlt to report."""
    state = working_dir / STATE_FILE
    schemas = sorted((working_dir / SCHEMAS_FOLDER).glob(f"*{SCHEMA_SUFFIX}"))
    damaged = {path: why for path in [state, *schemas] if (why := _damage(path)) is not None}
    if any(path != state for path in damaged) and state not in damaged and state.exists():
        damaged[state] = "left naming a schema that is set aside"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    moved = []
    for path, damage in damaged.items():
        target = working_dir.parent / DAMAGED_FOLDER / f"{working_dir.name}.{path.name}.{stamp}"
        try:
            target.parent.mkdir(exist_ok=True)
            path.rename(target)
        except OSError as error:
            log.warning("dlt's file %s is %s and could not be set aside (%s)", path, damage, error.strerror)
            continue
        log.warning("dlt's file %s was %s: set aside as %s; dlt rebuilds it from the database in this run",
                    path, damage, target)
        moved.append(target)
    return moved


def _damage(path: Path) -> str | None:
    """What is wrong with this JSON file, or None when it is a JSON object (or absent)."""
    try:
        content = path.read_bytes()
    except OSError:
        return None  # absent: dlt builds it; unreadable: dlt's own error says why
    if not content.strip():
        return "empty"
    try:
        document = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return "not whole JSON (cut short or overwritten)"
    if not isinstance(document, dict):
        return "not a JSON object"
    return None
