"""The fake API's two endpoints as Django REST framework views, with DRF's own authentication,
throttling, pagination and error answers: whatever DRF answers, a real Cekura answers too.

One Django app serves every FakeCekuraApi of the process; each request carries its server's
configuration (`environ[SERVED]`, put there by fake/middleware.py), so two servers with
different paging or throttles can run side by side.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import caches
from django.urls import path
from rest_framework import exceptions, pagination
from rest_framework.authentication import BaseAuthentication
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from cekura_sessions.api.endpoints import API_KEY_HEADER, PROJECTS_PATH, SESSIONS_PATH
from cekura_sessions.fake import store

SERVED = "cekura_fake.served"  # the WSGI environ key of the request's ServerConfig
AUTH_STYLES = ("401", "403")


@dataclass
class ServerConfig:
    """What one fake server answers with: its key, data, paging, throttle; read per request."""

    api_key: str
    served: Any  # fake.server._Served: the dataset and its rows, swapped whole
    page_size: int | None = None  # None: a bare JSON array, as the spec shows
    pagination: str = "page_number"
    max_page_size: int | None = None  # None: no page_size_query_param (or max_limit)
    auth: str = "401"
    throttle: type[SimpleRateThrottle] | None = None
    throttle_headers: str = "none"
    paginations: dict[str, type[pagination.BasePagination]] = field(default_factory=dict)


class _Client:
    """The authenticated party: DRF asks only whether it is authenticated."""

    is_authenticated = True


class ApiKeyAuthentication(BaseAuthentication):
    """`X-CEKURA-API-KEY`. No `authenticate_header`: DRF then answers a bad key with 403, as it
    does for every authentication class that sends no challenge."""

    def authenticate(self, request: Request) -> tuple[_Client, str] | None:
        key = request.META.get("HTTP_" + API_KEY_HEADER.upper().replace("-", "_"))
        if not key:
            return None  # IsAuthenticated then says "Authentication credentials were not provided."
        if key != request.META[SERVED].api_key:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        return _Client(), key


class ChallengingApiKeyAuthentication(ApiKeyAuthentication):
    """The same, with a challenge: DRF answers a bad key with 401 and `WWW-Authenticate`."""

    def authenticate_header(self, request: Request) -> str:
        return f'{API_KEY_HEADER} realm="api"'


class ApiKeyRateThrottle(SimpleRateThrottle):
    """DRF's SimpleRateThrottle keyed by the API key; rate, scope and timer are set per server
    (make_throttle). Its history lives in Django's cache, which every waitress thread shares,
    and is read and written without a lock, as DRF does: racing workers can overfill it."""

    scope = "api_key"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": request.auth}


def make_throttle(rate: str, scope: str, timer: Callable[[], float]) -> type[ApiKeyRateThrottle]:
    """A throttle class for one server: `rate` as DRF reads it (`10/s`, `20/min`), a cache scope
    of its own (a fresh window), and `timer` (seconds; a scaled clock in tests)."""
    return type("ServerRateThrottle", (ApiKeyRateThrottle,),
                {"rate": rate, "scope": scope, "timer": staticmethod(timer), "cache": caches["default"]})


def make_pagination(style: str, page_size: int, max_page_size: int | None) -> type[pagination.BasePagination]:
    """DRF's own paging class for one server, configured as a Cekura deployment might be."""
    query_param = "page_size" if max_page_size is not None else None
    if style == "page_number":
        attrs = {"page_size": page_size, "page_size_query_param": query_param, "max_page_size": max_page_size}
        return type("ServerPageNumberPagination", (pagination.PageNumberPagination,), attrs)
    if style == "limit_offset":
        attrs = {"default_limit": page_size, "max_limit": max_page_size}
        return type("ServerLimitOffsetPagination", (pagination.LimitOffsetPagination,), attrs)
    if style == "cursor":
        attrs = {"page_size": page_size, "page_size_query_param": query_param, "max_page_size": max_page_size,
                 "ordering": store.ORDERING}
        return type("ServerCursorPagination", (pagination.CursorPagination,), attrs)
    raise ValueError(f"unknown pagination {style!r}")


def int_param(value: str | None) -> int | None:
    """Django-style integer parsing: surrounding whitespace allowed, anything else is None."""
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def endpoint_of(request_path: str) -> tuple[str, int | None]:
    """Which endpoint a path asks ("projects", "sessions", "details", "other"), and for
    "details" the session id in it (as Django's `<int:...>` reads it: digits only)."""
    if request_path == PROJECTS_PATH:
        return "projects", None
    if request_path == SESSIONS_PATH:
        return "sessions", None
    rest = request_path[len(SESSIONS_PATH):] if request_path.startswith(SESSIONS_PATH) else ""
    if rest.endswith("/") and rest[:-1].isascii() and rest[:-1].isdigit():
        return "details", int(rest[:-1])
    return "other", None


class _CekuraView(GenericAPIView):
    permission_classes = [IsAuthenticated]

    @property
    def config(self) -> ServerConfig:
        return self.request.META[SERVED]

    def get_authenticators(self) -> list[BaseAuthentication]:
        # called while DRF wraps Django's request (View.setup stored it): the server's style
        challenge = self.request.META[SERVED].auth == "401"
        return [ChallengingApiKeyAuthentication() if challenge else ApiKeyAuthentication()]

    def get_throttles(self) -> list[SimpleRateThrottle]:
        throttle = self.config.throttle
        self._throttles = [throttle()] if throttle is not None else []
        return self._throttles

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in self._rate_limit_headers():
            response[name] = value
        return response

    def _rate_limit_headers(self) -> tuple[tuple[str, str], ...]:
        """What a gateway in front of the API adds (optional): the IETF draft's
        `RateLimit-Limit/Remaining/Reset` (Reset in seconds) or the older `X-RateLimit-*` (Reset
        as a Unix time, GitHub's way), read off DRF's throttle after it judged the request."""
        throttles = getattr(self, "_throttles", [])
        style = self.config.throttle_headers if throttles else "none"
        if style == "none" or not hasattr(throttles[0], "history"):
            return ()
        throttle = throttles[0]
        history, now = throttle.history, throttle.now
        wait = throttle.duration - (now - history[-1]) if history else throttle.duration
        remaining = max(0, throttle.num_requests - len(history))
        if style == "ratelimit":
            prefix, reset = "RateLimit", str(math.ceil(wait))
        else:
            prefix, reset = "X-RateLimit", str(math.ceil(throttle.timer() + wait))
        return ((f"{prefix}-Limit", str(throttle.num_requests)), (f"{prefix}-Remaining", str(remaining)),
                (f"{prefix}-Reset", reset))


class ProjectsView(_CekuraView):
    """`GET /user/v1/projects/`: every project, a bare array ("There is no pagination")."""

    def get(self, request: Request) -> Response:
        org_param = request.query_params.get("organization_id")
        organization_id = int_param(org_param)
        if org_param is not None and organization_id is None:
            raise exceptions.ValidationError({"organization_id": ["A valid integer is required."]})
        return Response(self.config.served.projects(organization_id))


class SessionsView(_CekuraView):
    """`GET /test_framework/v1/scenario-improvement-sessions/?project_id=N`: a bare array, or
    DRF pages cut by the server's paging class."""

    def get(self, request: Request) -> Response:
        project_id = int_param(request.query_params.get("project_id"))
        if project_id is None:
            raise exceptions.ValidationError({"project_id": ["This field is required."]})
        served = self.config.served
        if project_id not in served.project_ids:
            raise exceptions.NotFound()
        config = self.config
        if config.page_size is None:
            return Response(served.sessions(project_id))
        self.pagination_class = config.paginations.setdefault(
            config.pagination, make_pagination(config.pagination, config.page_size, config.max_page_size))
        if config.pagination == "cursor":
            rows = store.queryset(served, project_id)
            page = self.paginate_queryset(rows)
            return self.get_paginated_response([row.row for row in page])
        return self.get_paginated_response(self.paginate_queryset(served.sessions(project_id)))


class SessionDetailView(_CekuraView):
    """`GET /test_framework/v1/scenario-improvement-sessions/{id}/`: one session with `created_by`
    and `conversation_history` (fake/conversations.py); DRF's 404 `{"detail": "Not found."}` for
    an id no listing holds or a session deleted since it was listed."""

    def get(self, request: Request, session_id: int) -> Response:
        found = self.config.served.detail(session_id)
        if found is None:
            raise exceptions.NotFound()
        return Response(found)


urlpatterns = [
    path(PROJECTS_PATH.lstrip("/"), ProjectsView.as_view()),
    path(SESSIONS_PATH.lstrip("/"), SessionsView.as_view()),
    path(SESSIONS_PATH.lstrip("/") + "<int:session_id>/", SessionDetailView.as_view()),
]
