"""Django, configured once per process for the fake API: DRF's views (fake/views.py), its JSON
renderer and exception handler, a local-memory cache that every server thread shares (DRF's
throttle history), and SQLite for the cursor-paged listings (fake/store.py). No Django settings
module: nothing but the fake imports Django, and `run` never imports the fake."""

from __future__ import annotations

import logging
import threading
from typing import Any

_lock = threading.Lock()
_application: Any = None

EXTRA = "fake"


class FakeExtraMissing(RuntimeError):
    """Django, Django REST framework or waitress is not installed (the `fake` extra)."""


def require_fake_extra() -> None:
    """Raise FakeExtraMissing, with the one line a person reads, unless the fake can run."""
    missing = []
    for module, package in (("django", "Django"), ("rest_framework", "djangorestframework"), ("waitress", "waitress")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise FakeExtraMissing(f"the fake Cekura API needs {', '.join(missing)}: install the `{EXTRA}` extra "
                               f"(pip install 'cekura-sessions[{EXTRA}]', or make demo)")


def django_application() -> Any:
    """The one WSGI application of the process (Django's handler); configures Django the first time."""
    global _application
    with _lock:
        if _application is None:
            _application = _configure()
    return _application


def _configure() -> Any:
    require_fake_extra()
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler

    from cekura_sessions.fake import store

    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],  # DRF builds `next` links from the request's Host, whatever it is
        SECRET_KEY="cekura-fake-api",  # signs nothing here; Django refuses to start without one
        ROOT_URLCONF="cekura_sessions.fake.views",
        INSTALLED_APPS=["rest_framework", "cekura_sessions.fake.store.StoreConfig"],
        MIDDLEWARE=[],
        USE_TZ=True,
        LOGGING_CONFIG=None,  # the CLI's logging stays as it is
        DATABASES={"default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": store.database_file(),
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 30},
        }},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "OPTIONS": {"MAX_ENTRIES": 100_000}}},
        REST_FRAMEWORK={
            "UNAUTHENTICATED_USER": None,  # no django.contrib.auth: the key is the only identity
            "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
            "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
        },
    )
    django.setup()
    # 4xx answers are the fake's job, not news; a 500 from a bug in the fake still shows
    logging.getLogger("django.request").setLevel(logging.ERROR)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    return WSGIHandler()
