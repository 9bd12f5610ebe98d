"""The HTTP API's error answers: DRF's, plus a JSON 503 when the database is down."""

from __future__ import annotations

import logging
from typing import Any

from django.db import InterfaceError, OperationalError
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)

#: Seconds a client should wait before retrying after a 503 (the ``Retry-After`` header).
RETRY_AFTER_SECONDS = 1


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler (``REST_FRAMEWORK["EXCEPTION_HANDLER"]``), plus one case.

    A database that cannot be reached (``OperationalError``: the server is down, the pool
    timed out; ``InterfaceError``: the connection broke) answers ``503`` with
    ``{"detail": str, "code": "unavailable"}`` and ``Retry-After: 1``, the same code the
    WebSocket protocol uses, instead of Django's HTML 500 page. Services write in one
    transaction, so nothing of the request was stored. Anything else is left to DRF (and a
    bug still answers 500).
    """
    response = exception_handler(exc, context)
    if response is None and isinstance(exc, (OperationalError, InterfaceError)):
        request = context.get("request")
        logger.warning(
            "event=api.unavailable path=%s error=%r",
            getattr(request, "path", "?"),
            exc,
        )
        return Response(
            {
                "detail": "the database is unavailable; nothing was written, retry",
                "code": "unavailable",
            },
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return response
