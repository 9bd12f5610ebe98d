"""The HTTP API's error answers: always JSON under ``/api/``, and a 4xx for bad input.

- ``api_exception_handler``: DRF's exception handler, plus a JSON 503 when the database is
  down and a JSON 400 for input the database refuses (out-of-range numbers, NUL characters).
- ``bad_request``, ``permission_denied``, ``page_not_found``, ``server_error``: Django's
  ``handler400/403/404/500`` (set in ``townsquare/urls.py``); under ``/api/`` they answer
  ``{"detail": str, "code": str}`` instead of Django's HTML pages, elsewhere Django's pages.

Every JSON error here has the shape of DRF's errors plus a ``code`` (the same codes as the
WebSocket protocol's error frames where one fits: ``invalid``, ``not_found``, ``forbidden``,
``unavailable``). Ideas: DRF's "Custom exception handling" and Django's "Customizing error
views" docs; OWASP REST Security cheat sheet ("Error handling": no stack traces, no HTML).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DataError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from redis.exceptions import RedisError
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

logger = logging.getLogger(__name__)

#: Seconds a client should wait before retrying after a 503 (the ``Retry-After`` header).
RETRY_AFTER_SECONDS = 1

#: Paths whose error pages are JSON.
API_PREFIX = "/api/"


def is_bad_input(exc: Exception) -> bool:
    """True for errors that only the client's input can cause, raised below the serializers.

    - ``django.db.DataError``: the database refused a value (PostgreSQL: ``bigint out of
      range``, a text with a NUL byte: ``PostgreSQL text fields cannot contain NUL``);
    - ``OverflowError``: SQLite's driver cannot bind an int beyond 64 bits;
    - ``ValueError`` about NUL characters (psycopg2's "A string literal cannot contain NUL").

    Other ``ValueError``s are bugs and stay 500s.
    """
    if isinstance(exc, (DataError, OverflowError)):
        return True
    return isinstance(exc, ValueError) and "NUL" in str(exc)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler (``REST_FRAMEWORK["EXCEPTION_HANDLER"]``), plus two cases.

    - A database that cannot be reached (``OperationalError``: the server is down, the pool
      timed out; ``InterfaceError``: the connection broke), or a Redis behind the shared cache
      that does not answer (``redis.RedisError``: sign-in throttling counts failures there)
      answers ``503`` with
      ``{"detail": str, "code": "unavailable"}`` and ``Retry-After: 1``, the same code the
      WebSocket protocol uses, instead of Django's HTML 500 page. Services write in one
      transaction, so nothing of the request was stored.
    - Input the database refuses (``is_bad_input``) answers ``400`` with
      ``{"detail": str, "code": "invalid"}``; the transaction is rolled back.

    Anything else is left to DRF (and a bug still answers 500, as JSON: ``server_error``).
    """
    response = exception_handler(exc, context)
    if response is not None:
        return response
    request = context.get("request")
    path = getattr(request, "path", "?")
    if isinstance(exc, (OperationalError, InterfaceError, RedisError)):
        what = "the shared cache" if isinstance(exc, RedisError) else "the database"
        logger.warning("event=api.unavailable path=%s error=%r", path, exc)
        return Response(
            {"detail": f"{what} is unavailable; nothing was written, retry", "code": "unavailable"},
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if is_bad_input(exc):
        set_rollback()
        logger.info("event=api.bad_input path=%s error=%s", path, type(exc).__name__)
        return Response(
            {
                "detail": "a value is out of range or contains a character that is not allowed",
                "code": "invalid",
            },
            status=400,
        )
    return None


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def _json(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code}, status=status)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler400``: a request Django refused (``SuspiciousOperation``: bad ``Host``,
    oversized body, too many fields) → 400 ``{"detail", "code": "bad_request"}`` under
    ``/api/``."""
    if _is_api(request):
        return _json(400, "bad_request", "Bad request.")
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler403`` → 403 ``{"detail", "code": "forbidden"}`` under ``/api/``."""
    if _is_api(request):
        return _json(403, "forbidden", "You do not have permission to perform this action.")
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: no URL matched (including an id outside ``1..2**63-1``, see
    ``townsquare.converters``) → 404 ``{"detail", "code": "not_found"}`` under ``/api/``."""
    if _is_api(request):
        return _json(404, "not_found", "Not found.")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a bug (its traceback is in the log) → 500 ``{"detail", "code":
    "internal"}`` under ``/api/``, so API clients never have to parse an HTML page."""
    if _is_api(request):
        return _json(500, "internal", "Internal server error.")
    return defaults.server_error(request)
