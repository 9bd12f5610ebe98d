"""The HTTP API's error answers: always JSON under ``/api/``, and a 4xx for bad input.

- ``api_exception_handler``: DRF's exception handler, plus every exception of the shared
  mapping (``realtime.errors``): a JSON 503 when the database or the shared cache is down,
  400 for input the database refuses (out-of-range numbers, NUL characters), 409 for a write
  the database's integrity rules refuse, and Django's own exceptions.
- ``api_error``: for the apps' views, the DRF exception a service's exception maps to, with
  the view's field name and "not found" sentence.
- ``bad_request``, ``permission_denied``, ``page_not_found``, ``server_error``: Django's
  ``handler400/403/404/500`` (set in ``townsquare/urls.py``); under ``/api/`` they answer
  ``{"detail": str, "code": str}`` instead of Django's HTML pages, elsewhere Django's pages.

Every JSON error here has the shape of DRF's errors plus a ``code`` (the same codes as the
WebSocket protocol's error frames: ``invalid``, ``not_found``, ``forbidden``, ``conflict``,
``unavailable``). Ideas: DRF's "Custom exception handling" and Django's "Customizing error
views" docs; OWASP REST Security cheat sheet ("Error handling": no stack traces, no HTML).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from .errors import is_bad_input, map_exception
from .protocol import ErrorCode

__all__ = [
    "API_PREFIX",
    "RETRY_AFTER_SECONDS",
    "api_error",
    "api_exception_handler",
    "bad_request",
    "is_bad_input",
    "page_not_found",
    "permission_denied",
    "server_error",
]

logger = logging.getLogger(__name__)

#: Seconds a client should wait before retrying after a 503 (the ``Retry-After`` header).
RETRY_AFTER_SECONDS = 1

#: Paths whose error pages are JSON.
API_PREFIX = "/api/"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler (``REST_FRAMEWORK["EXCEPTION_HANDLER"]``), then the shared
    mapping (``realtime.errors.map_exception``) for what DRF leaves.

    - A database that cannot be reached (``OperationalError``: the server is down, the pool
      timed out; ``InterfaceError``: the connection broke), or a Redis behind the shared cache
      that does not answer (``redis.RedisError``: sign-in throttling counts failures there)
      answers ``503`` ``{"detail": str, "code": "unavailable"}`` with ``Retry-After: 1``.
      Services write in one transaction, so nothing of the request was stored.
    - Input the database refuses (``is_bad_input``) answers ``400`` ``{"detail", "code":
      "invalid"}``; an ``IntegrityError`` answers ``409`` ``{"detail", "code":
      "conflict"}``; the transaction is rolled back.
    - Django's ``ValidationError`` → 400 ``invalid``, ``ObjectDoesNotExist`` → 404
      ``not_found`` (``PermissionDenied`` and ``Http404`` are DRF's own).

    Anything else is left to Django (a bug answers 500, as JSON: ``server_error``).
    """
    response = exception_handler(exc, context)
    if response is not None:
        return response
    mapped = map_exception(exc)
    if mapped is None:
        return None
    request = context.get("request")
    path = getattr(request, "path", "?")
    headers = None
    if mapped.code == ErrorCode.UNAVAILABLE:
        logger.warning("event=api.unavailable path=%s error=%r", path, exc)
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    else:
        set_rollback()
        logger.info("event=api.%s path=%s error=%s", mapped.code, path, type(exc).__name__)
    return Response(
        {"detail": mapped.detail, "code": str(mapped.code)}, status=mapped.status, headers=headers
    )


def api_error(
    exc: Exception,
    *,
    field: str | None = None,
    not_found: str | None = None,
    forbidden_as_not_found: bool = False,
) -> Exception:
    """The exception an API view raises for ``exc``, raised by a service it called.

    Through the shared mapping (``realtime.errors``): ``invalid`` from Django's
    ``ValidationError`` becomes DRF's ``ValidationError`` (400) with the messages under
    ``field`` (``{field: [str]}``; the plain list without a field); ``forbidden`` becomes
    DRF's ``PermissionDenied`` (403), or ``NotFound`` when ``forbidden_as_not_found`` (a
    private object's existence stays hidden); ``not_found`` becomes ``NotFound`` (404) with
    the ``not_found`` sentence. Anything else is returned as it is, for
    ``api_exception_handler`` (503, 409, 400) or, a bug, a 500.

    Use: ``except Exception as exc: raise api_error(exc, field="name") from exc``.
    """
    mapped = map_exception(exc)
    if mapped is None:
        return exc
    code = mapped.code
    if code == ErrorCode.FORBIDDEN and forbidden_as_not_found:
        code = ErrorCode.NOT_FOUND
    if code == ErrorCode.NOT_FOUND:
        return NotFound(not_found or mapped.detail)
    if code == ErrorCode.FORBIDDEN:
        return PermissionDenied(str(exc) or mapped.detail)
    if code == ErrorCode.INVALID and isinstance(exc, DjangoValidationError):
        detail: Any = {field: exc.messages} if field else exc.messages
        return ValidationError(detail, code=getattr(exc, "code", None))
    return exc


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
