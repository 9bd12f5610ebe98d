"""Project-wide pages: the API's index (``/api/``) and its browsable reference (``/api/docs/``).

``GET /api/`` lists the API's endpoint groups with links: the reference, the OpenAPI schema,
the AsyncAPI document of the WebSocket protocol, the token endpoint, then every operation of
the OpenAPI schema grouped by its tag (``rooms``, ``items``, ``notifications``, …), so the
index never falls behind the API. HTML for browsers; JSON for ``Accept: application/json``
(or ``?format=json``), shaped::

    {"title": str, "version": str, "description": str,
     "reference": [{"name", "title", "url", "description"}],
     "groups": [{"tag", "title", "description",
                 "endpoints": [{"path", "methods": [str], "summary", "docs"}]}]}

Every URL is a path on this server. Nobody needs to be signed in to read it.

``/api/docs/``: Swagger UI, served from our own static files (drf-spectacular-sidecar), with
its start-up script as a separate same-origin request, so the site's CSP (no inline script or
style, nothing from another origin) holds there too.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe
from django.views.decorators.vary import vary_on_headers
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.views import SpectacularSwaggerSplitView

__all__ = ["ApiDocsView", "api_groups", "api_index"]

#: Titles and one-line descriptions of the schema's tags, in the order the index shows them;
#: a tag not named here comes after them, titled by its name.
GROUPS: dict[str, tuple[str, str]] = {
    "token": (
        "Sign-in",
        "Trade a username and password for a short-lived JWT; send it as "
        "Authorization: Bearer <token>, or use the session cookie (with its CSRF token).",
    ),
    "rooms": (
        "Rooms and messages",
        "Rooms you see, their messages (history, send, edit, delete, reactions), "
        "membership and your read cursor.",
    ),
    "items": (
        "Shop",
        "Items with their stock, purchases (never oversold) and watches.",
    ),
    "purchases": ("Purchases", "Your purchases."),
    "notifications": ("Notifications", "Your inbox: list, unread count, mark read."),
    "feed": ("Dashboard", "The demo feed that writes records the dashboard counts."),
    "publish": (
        "Publish",
        "Trusted backends push an event to any stream (X-Townsquare-Key).",
    ),
}

_METHODS = ("get", "post", "put", "patch", "delete")
_LITERAL = re.compile(r"``([^`]*)``")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def _summary(operation: dict[str, Any]) -> str:
    """The operation's summary, else the first sentence of its description, as plain text."""
    text = operation.get("summary") or operation.get("description") or ""
    text = _LITERAL.sub(r"\1", " ".join(text.split()))
    return _SENTENCE_END.split(text, maxsplit=1)[0]


@functools.cache
def _schema() -> dict[str, Any]:
    # The routes and views do not change while the process runs: build the schema once
    # (about 0.1 s), as /api/schema/ would.
    return SchemaGenerator().get_schema(request=None, public=True)


def api_groups() -> list[dict[str, Any]]:
    """The schema's operations grouped by tag: ``[{tag, title, description, endpoints}]``,
    each endpoint ``{path, methods, summary, docs}`` (``docs``: its Swagger UI deep link)."""
    docs = reverse("api-docs")
    groups: dict[str, dict[str, Any]] = {}
    for path, item in _schema().get("paths", {}).items():
        operations = [(m, item[m]) for m in _METHODS if m in item]
        if not operations:
            continue
        first = operations[0][1]
        tag = (first.get("tags") or ["other"])[0]
        title, description = GROUPS.get(tag, (tag.replace("-", " ").capitalize(), ""))
        group = groups.setdefault(
            tag, {"tag": tag, "title": title, "description": description, "endpoints": []}
        )
        group["endpoints"].append(
            {
                "path": path,
                "methods": [m.upper() for m, _ in operations],
                "summary": _summary(first),
                "docs": f"{docs}#/{tag}/{first.get('operationId', '')}",
            }
        )
    order = list(GROUPS)
    return sorted(
        groups.values(),
        key=lambda g: (order.index(g["tag"]) if g["tag"] in order else len(order), g["tag"]),
    )


def _reference() -> list[dict[str, str]]:
    schema = reverse("api-schema")
    return [
        {
            "name": "docs",
            "title": "API reference",
            "url": reverse("api-docs"),
            "description": "Every operation, its parameters, answers and errors; try them "
            "out signed in.",
        },
        {
            "name": "schema",
            "title": "OpenAPI schema",
            "url": schema,
            "description": f"OpenAPI 3 as YAML; {schema}?format=json for JSON.",
        },
        {
            "name": "asyncapi",
            "title": "WebSocket protocol (AsyncAPI)",
            "url": reverse("api-asyncapi"),
            "description": "Every frame and event of /ws/, with their payload schemas.",
        },
        {
            "name": "token",
            "title": "Token endpoint",
            "url": reverse("api-token"),
            "description": "POST {username, password} → {access, token_type, expires_in}.",
        },
    ]


def _wants_json(request: HttpRequest) -> bool:
    if request.GET.get("format") == "json":
        return True
    # A browser asks for text/html first; `*/*` (curl's default) gets the page too.
    return request.get_preferred_type(["text/html", "application/json"]) == "application/json"


@require_safe
@vary_on_headers("Accept")
def api_index(request: HttpRequest) -> HttpResponse:
    """``GET /api/``: the API's index (module docstring), as HTML or JSON."""
    context = {
        "title": spectacular_settings.TITLE,
        "version": spectacular_settings.VERSION,
        "description": "HTTP endpoints beside the WebSocket protocol (/ws/); both call the "
        "same services.",
        "reference": _reference(),
        "groups": api_groups(),
    }
    if _wants_json(request):
        return JsonResponse(context, json_dumps_params={"ensure_ascii": False})
    return render(request, "townsquare/api_index.html", context)


class ApiDocsView(SpectacularSwaggerSplitView):
    """``GET /api/docs/``: Swagger UI over ``/api/schema/``; ``?script`` is its start-up
    script (the split view keeps it out of the page, for the CSP)."""

    url_name = "api-schema"
    template_name = "townsquare/api_docs.html"
    title = f"{spectacular_settings.TITLE} reference"
