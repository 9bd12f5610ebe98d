"""Sign-in throttling hooks for django-axes (settings: "Sign-in throttling").

- ``client_address``: the address failures are counted under (``AXES_CLIENT_IP_CALLABLE``).
- ``lockout_response``: the answer to a locked-out sign-in (``AXES_LOCKOUT_CALLABLE``).

Ideas: django-axes' "Customizing lockout responses" and "Configuring reverse proxies" docs;
OWASP Authentication cheat sheet ("Account lockout": lock per account, answer the same
whether or not the password was right); RFC 6585 §4 (429 with ``Retry-After``).
"""

from __future__ import annotations

from typing import Any

from axes.helpers import get_cool_off
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse

#: The ``code`` of the JSON lockout answer under ``/api/`` (see docs/operations.md).
LOCKED_OUT_CODE = "locked_out"
API_PREFIX = "/api/"


def client_address(request: HttpRequest) -> str | None:
    """The client's address: ``REMOTE_ADDR`` only, never a header the client can write.

    ``manage.py serve`` puts the real client's address there when a ``TRUSTED_PROXIES``
    proxy forwarded the request (uvicorn's proxy headers); any other ``X-Forwarded-For`` is
    ignored, so changing it per request cannot spread guesses over many counters.
    """
    address = request.META.get("REMOTE_ADDR")
    return str(address) if address else None


def retry_after_seconds(request: HttpRequest) -> int:
    """Seconds until a locked-out account or address may try again (``LOGIN_COOLOFF_SECONDS``).

    Every attempt while locked counts as one more failure and renews the cool-off, so the
    whole cool-off is the honest wait from now.
    """
    cool_off = get_cool_off(request)
    return int(cool_off.total_seconds()) if cool_off else 0


def lockout_response(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Answer a sign-in refused because its account or address is locked out: status 429.

    Under ``/api/`` (``POST /api/token/``): JSON ``{"detail": str, "code": "locked_out"}``,
    as DRF's other errors; elsewhere (``/accounts/login/``, ``/admin/login/``) the page
    ``registration/locked_out.html``. Both carry ``Retry-After`` in seconds. The answer is
    the same whether or not the password was right, so it tells a guesser nothing.

    django-axes calls it with ``(request, response, credentials)`` or, from its async
    middleware, ``(request, credentials)``; only the request is used.
    """
    wait = retry_after_seconds(request)
    response: HttpResponse
    if request.path.startswith(API_PREFIX):
        response = JsonResponse(
            {
                "detail": "Too many failed sign-ins for this account or address; "
                f"try again in {wait} seconds.",
                "code": LOCKED_OUT_CODE,
            },
            status=429,
        )
    else:
        response = TemplateResponse(
            request, "registration/locked_out.html", {"retry_after": wait}, status=429
        )
        response.render()
    response["Retry-After"] = str(wait)
    return response
