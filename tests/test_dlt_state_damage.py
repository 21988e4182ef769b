"""dlt's folder is disposable (issue 19 item 6): a missing, empty or corrupt state or schema file
in `<db>.dlt/` is set aside (moved, never deleted) and rebuilt from the database in the same run,
with one warning naming the file. Real files, the real pipeline, the fake API on loopback."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pytest
from support import expected

pytestmark = pytest.mark.e2e

_DAMAGES = {
    "state-empty": ("state.json", b""),
    "state-cut-short": ("state.json", None),  # the first half of what was there
    "state-missing": ("state.json", "missing"),
    "schema-empty": ("schemas/cekura.schema.json", b""),
    "schema-not-an-object": ("schemas/cekura.schema.json", b"[]"),
}


@pytest.mark.parametrize("case", list(_DAMAGES))
def test_a_damaged_dlt_file_is_set_aside_and_rebuilt_in_the_same_run(case, run_night, first_night, api, dataset,
                                                                       db_path, tmp_path, caplog):
    first_night(build_models=False)
    working = tmp_path / "pipelines" / "cekura_sessions"  # run_night's pipelines_dir
    name, damage = _DAMAGES[case]
    path = working / name
    before = path.read_bytes()
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(before[: len(before) // 2] if damage is None else damage)
    tomorrow = dataset.next_night(seed=3)
    api.dataset = tomorrow
    caplog.set_level(logging.WARNING)

    outcome = run_night(build_models=False)

    assert outcome.exit_code == 0, outcome.message
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(tomorrow)
        assert expected.loaded_scenario_ids(con) == expected.scenario_ids(tomorrow)
    set_aside = sorted((tmp_path / "pipelines" / "damaged").glob("*")) if damage != "missing" else []
    warnings = [r.getMessage() for r in caplog.records if r.name.endswith("dlt_folder")]
    if damage == "missing":
        assert warnings == []  # nothing to set aside: dlt restores it from the database
    else:
        assert f"cekura_sessions.{path.name}." in " ".join(p.name for p in set_aside), set_aside
        assert any(str(path) in w for w in warnings), warnings
        damaged_copy = next(p for p in set_aside if p.name.startswith(f"cekura_sessions.{path.name}."))
        assert damaged_copy.stat().st_size == (len(before) // 2 if damage is None else len(damage))
    assert path.exists(), "dlt rebuilt the file"

    caplog.clear()
    assert run_night(build_models=False).exit_code == 0
    assert [r for r in caplog.records if r.name.endswith("dlt_folder")] == []
