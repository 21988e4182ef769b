"""The rows DRF's CursorPagination pages: it needs a queryset (`order_by`, `filter` on the
ordering field), not a list, so a listing that is paged by cursor is first copied into Django's
ORM, over SQLite in a temporary file (WAL, so requests read while a listing move writes).

Each dataset a server holds is one generation: its rows are copied once, the first time a
cursor page of it is asked for, and kept while the process lives (another server of the process
may still serve an older one; a test's data is small).
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import orjson
from django.apps import AppConfig
from django.db import connection, models, transaction

APP_LABEL = "cekura_fake"
ORDERING = ("position",)  # the listing's own order: DRF's cursor keeps its place in it
_generations = itertools.count(1)
_lock = threading.Lock()
_loaded: set[int] = set()
_model: Any = None


class StoreConfig(AppConfig):
    """The Django app that owns the one model below (a name Django can import, a label of ours)."""

    name = "cekura_sessions.fake"
    label = APP_LABEL
    default_auto_field = "django.db.models.BigAutoField"


def database_file() -> str:
    """A fresh SQLite file for this process, removed when it exits."""
    folder = Path(tempfile.mkdtemp(prefix="cekura-fake-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return str(folder / "listings.sqlite3")


def new_generation() -> int:
    return next(_generations)


def _listed_session() -> Any:
    """The model, defined once Django's apps are ready (a model cannot be declared before)."""
    global _model
    if _model is None:
        class ListedSession(models.Model):
            generation = models.IntegerField()
            project_id = models.BigIntegerField()
            position = models.IntegerField()
            body = models.BinaryField()

            class Meta:
                app_label = APP_LABEL
                indexes = [models.Index(fields=["generation", "project_id", "position"])]

            @property
            def row(self) -> Any:
                return orjson.loads(self.body)

        with connection.schema_editor() as editor:
            editor.create_model(ListedSession)
        _model = ListedSession
    return _model


def queryset(served: Any, project_id: int) -> Any:
    """The rows of `project_id` in `served` (fake.server._Served: `.generation`, `.dataset`),
    as a queryset CursorPagination can order and filter."""
    with _lock:
        model = _listed_session()
        if served.generation not in _loaded:
            with transaction.atomic():
                model.objects.bulk_create(
                    model(generation=served.generation, project_id=pid, position=index, body=orjson.dumps(row))
                    for pid, rows in served.dataset.sessions.items() for index, row in enumerate(rows)
                )
            _loaded.add(served.generation)
    return model.objects.filter(generation=served.generation, project_id=project_id)
