"""A database as a plain first night leaves it, made once per test worker and copied into a
test's place, for tests whose first night only gives the night they are about its history.

Why by hand: a copy takes milliseconds where the night takes a second of CPU, and no library
keeps a DuckDB file with its dlt folder. The copy is what the night wrote: the DuckDB file and
dlt's working folder, whose marker (run/dlt_pipeline.py) names the file it serves and is pointed
at the copy, so the next night goes on from it as from its own. The night ran against a fake
API of its own, with the suite's data: the test's server never sees its requests. Its listings
come whole, not paged: a page names the next by the server's address, which differs from the
test's server, and a night compares its pages with the last night's.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from cekura_sessions.fake.data import generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults

from support.settings import API_KEY, DATASET_SPEC

FILE = "cekura.duckdb"


class FirstNights:
    """Made first nights, by run settings and configuration, in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.made: dict[str, Path] = {}

    def copy_to(self, db_path: Path, pipelines_dir: Path | None, run: Callable[..., Any],
                overrides: dict[str, Any]) -> None:
        """Put the first night's database at `db_path` and its dlt folder in `pipelines_dir`
        (None: beside the file, as the CLI keeps it). `run(**settings)` runs a night as the
        test's `run_night` does, with `overrides`."""
        from cekura_sessions.run.dlt_pipeline import DLT_DEFAULTS  # imports dlt: here, not for every test

        # what the settings and the configuration the night reads (dlt's and ours) were; not the
        # defaults the first night in a process puts in the environment itself, or every later
        # first night of the same settings would be made again
        configured = sorted((k, v) for k, v in os.environ.items()
                            if (k.startswith("CEKURA_") or "__" in k) and DLT_DEFAULTS.get(k) != v)
        beside = pipelines_dir is None
        key = json.dumps([sorted(overrides.items()), beside, configured], default=str)
        made = self.made.get(key) or self._make(key, run, overrides, beside)
        copy_night(made, db_path, pipelines_dir)

    def _server(self) -> AbstractContextManager[FakeCekuraApi]:
        """The server the first night reads: one of its own, serving the suite's data whole."""
        return FakeCekuraApi(generate(DATASET_SPEC), api_key=API_KEY, faults=Faults())

    def _make(self, key: str, run: Callable[..., Any], overrides: dict[str, Any], beside: bool) -> Path:
        folder = self.folder / str(len(self.made))
        folder.mkdir()
        with self._server() as server:
            outcome = run(db=folder / FILE, base_url=server.url,
                          pipelines_dir=None if beside else str(folder / "pipelines"), **overrides)
        assert outcome.exit_code == 0, f"the first night failed: {outcome.message}"
        self.made[key] = folder
        return folder


def copy_night(made: Path, db_path: Path, pipelines_dir: Path | None) -> None:
    """Put the night that ran into folder `made` (its FILE, and dlt's folder: `made/pipelines`, or
    beside the file when `pipelines_dir` is None, as the CLI keeps it) at `db_path`, its dlt folder
    in `pipelines_dir`; the folder's marker (run/dlt_pipeline.py) then names the copy, so the next
    night goes on from it as from its own."""
    shutil.copy(made / FILE, db_path)
    target = db_path.with_name(f"{db_path.name}.dlt") if pipelines_dir is None else pipelines_dir
    copy_dlt_folder(made / (f"{FILE}.dlt" if pipelines_dir is None else "pipelines"), target, str(db_path.resolve()))


def copy_dlt_folder(source: Path, target: Path, database: str) -> None:
    """Copy dlt's working folder `source` to `target` for the copy of its database that `database`
    names, as the night records it (run/dlt_pipeline.py's bind_to_database: a file's resolved
    path, or str(Database) of a PostgreSQL URL): its marker then names the copy."""
    from cekura_sessions.run.dlt_pipeline import _FOLDER_MARKER  # imports dlt: here, not for every test

    shutil.copytree(source, target)
    markers = list(target.glob(f"*/{_FOLDER_MARKER}"))
    # a marker naming another database would make the next night drop the folder and restore it from the database
    assert len(markers) == 1, f"dlt's folder holds {len(markers)} markers of the database it serves, not one"
    served = json.loads(markers[0].read_text(encoding="utf-8"))
    markers[0].write_text(json.dumps({**served, "path": database}), encoding="utf-8")
