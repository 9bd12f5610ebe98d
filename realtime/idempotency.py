"""Idempotent HTTP writes: the ``Idempotency-Key`` request header on the API's POSTs.

Decorate a DRF view's handler with ``@idempotent``. A request without the header runs as
before. With it (IETF draft-ietf-httpapi-idempotency-key-header; Stripe's "Idempotent
requests" semantics), per signed-in user:

- the first request with a key runs, and its answer (status and JSON body) is recorded;
- a retry with the same key, method, path and body gets that answer again, with
  ``Idempotent-Replayed: true``, and writes nothing (a purchase retried any number of times
  buys once);
- the same key with another body, method or path: 422 ``{"code": "idempotency_key_reused",
  "detail"}``, nothing written;
- a retry while the first request is still running: 409 ``{"code":
  "idempotency_key_in_flight", "detail"}``; retry later;
- a malformed key (empty, over 255 characters, anything but printable ASCII): 400
  ``{"code": "idempotency_key_invalid", "detail"}``. The draft's form, a quoted
  Structured Field string (``"8e03…"``, RFC 8941 §3.3.3), and Stripe's bare form are both
  accepted; the key is the string inside the quotes.

Answers below 500 are recorded and replayed as they were, errors included (a 409
``out_of_stock`` stays the answer to that key, as Stripe keeps a declined charge). A 5xx
(``unavailable``: the database or Redis failed, or a bug) records nothing and frees the key,
so the client retries with the same key. Validation that runs before the key is claimed
(sign-in, permissions, a body that is not JSON) is not recorded either.

How (the "atomic phases" of Stripe's design): the key's row is inserted ``in_flight`` in a
transaction of its own, committed before the write starts, so a concurrent retry sees it
(409). The write then runs inside one transaction together with the recording of its answer:
both are committed or neither is, so no crash can leave a write whose answer is lost. Each
attempt holds a random token, and the answer is recorded only ``WHERE attempt = token``:
an attempt whose key was taken over (its process looked dead for ``ABANDONED_AFTER_SECONDS``)
rolls its write back and answers 409, so a key never writes twice. Keys live at least
``IDEMPOTENCY_KEY_TTL_SECONDS`` (default 24 h); the leader's ``idempotency-expiry`` service
deletes older ones every ``EXPIRY_INTERVAL_SECONDS`` (``run_expiry``, ``delete_expired``), and
a key found expired before that is treated as new.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Concatenate, cast

from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.http import QueryDict
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .conf import rt_settings
from .models import IdempotencyKey

__all__ = [
    "ABANDONED_AFTER_SECONDS",
    "EXPIRY_INTERVAL_SECONDS",
    "HEADER",
    "IDEMPOTENCY_IN_FLIGHT",
    "IDEMPOTENCY_KEY_PARAMETER",
    "IDEMPOTENCY_PARAMETERS",
    "IDEMPOTENCY_RESPONSES",
    "IDEMPOTENT_REPLAYED_PARAMETER",
    "MAX_KEY_LENGTH",
    "REPLAYED_HEADER",
    "InvalidKey",
    "delete_expired",
    "idempotent",
    "parse_key",
    "request_fingerprint",
    "run_expiry",
]

logger = logging.getLogger(__name__)

#: The request header (draft-ietf-httpapi-idempotency-key-header).
HEADER = "Idempotency-Key"
#: Set to ``true`` on an answer replayed from an earlier request with the same key.
REPLAYED_HEADER = "Idempotent-Replayed"
#: Longest key, in characters (Stripe's bound).
MAX_KEY_LENGTH = 255
#: An ``in_flight`` key this old (seconds since its attempt took it) is taken to belong to a
#: request whose process died; the next retry takes it over. Safe even when that request is
#: only slow: it can no longer record its answer, so its write is rolled back.
ABANDONED_AFTER_SECONDS = 60.0
#: How often the leader deletes expired keys, in seconds.
EXPIRY_INTERVAL_SECONDS = 300.0

CODE_INVALID = "idempotency_key_invalid"
CODE_REUSED = "idempotency_key_reused"
CODE_IN_FLIGHT = "idempotency_key_in_flight"


class InvalidKey(ValueError):
    """An ``Idempotency-Key`` value that is no key; the message says why (400)."""


def parse_key(value: str) -> str:
    """The key in an ``Idempotency-Key`` header value: the string of an RFC 8941 sf-string
    (``"abc"``, with ``\\"`` and ``\\\\`` escapes) or the bare value (``abc``, Stripe's form).

    Raises ``InvalidKey`` when the key is empty, longer than ``MAX_KEY_LENGTH`` characters,
    or holds anything but printable ASCII (0x20-0x7E; a bare key no space at either end, as
    HTTP strips them), or a quoted value is not a well-formed sf-string.
    """
    value = value.strip(" \t")
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            raise InvalidKey("a quoted key must end with a quote")
        key, escaped = [], False
        for char in value[1:-1]:
            if escaped:
                if char not in '"\\':
                    raise InvalidKey("only \\\" and \\\\ may be escaped in a quoted key")
                key.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                raise InvalidKey("an unescaped quote inside a quoted key")
            else:
                key.append(char)
        if escaped:
            raise InvalidKey("a quoted key must not end with a backslash")
        value = "".join(key)
    if not value:
        raise InvalidKey("the key is empty")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidKey(f"the key is longer than {MAX_KEY_LENGTH} characters")
    if not all(" " <= char <= "~" for char in value):
        raise InvalidKey("the key may hold printable ASCII characters only")
    return value


def request_fingerprint(data: Any) -> str:
    """SHA-256 (hex) of a request's parsed body (``request.data``) as canonical JSON: keys
    sorted, no spaces, ASCII escapes. ``{"a": 1, "b": 2}`` and ``{"b":2,"a":1}`` are the same
    request; a form body (``QueryDict``) counts each field's list of values."""
    if isinstance(data, QueryDict):
        data = {name: data.getlist(name) for name in data}
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _answer(status: int, code: str, detail: str) -> Response:
    return Response({"code": code, "detail": detail}, status=status)


def _in_flight() -> Response:
    return _answer(
        409,
        CODE_IN_FLIGHT,
        "A request with this Idempotency-Key is still being processed; retry later.",
    )


def _reused() -> Response:
    return _answer(
        422,
        CODE_REUSED,
        "This Idempotency-Key was used for a different request (method, path or body); "
        "use a new key for a new request.",
    )


def _replay(row: IdempotencyKey) -> Response:
    data = json.loads(row.response_body) if row.response_body else None
    response = Response(data, status=row.response_status)
    response[REPLAYED_HEADER] = "true"
    return response


@dataclass(frozen=True)
class _Claim:
    """The key this attempt holds: the row's id and the attempt's token."""

    pk: int
    attempt: str


def _claim(
    user: AbstractBaseUser, key: str, request_path: str, fingerprint: str
) -> _Claim | Response:
    """Take the key for this attempt (inserted ``in_flight`` and committed), or the answer
    to give instead: the recorded one (replay), 422 (another request's key) or 409."""
    attempt = secrets.token_hex(16)
    for _ in range(3):  # each turn follows a row that changed under us
        now = timezone.now()
        # Read first: a replay then costs one read, and takes no write lock (SQLite).
        found = IdempotencyKey.objects.filter(user_id=user.pk, key=key).first()
        if found is None:
            try:
                # Its own transaction (a savepoint when the caller is in one): committed
                # before the write starts, so a concurrent retry finds it.
                with transaction.atomic():
                    row = IdempotencyKey.objects.create(
                        user_id=user.pk,
                        key=key,
                        request_path=request_path,
                        fingerprint=fingerprint,
                        attempt=attempt,
                        created_at=now,
                        locked_at=now,
                    )
                return _Claim(row.pk, attempt)
            except IntegrityError:
                continue  # a concurrent request inserted it first: read it
        if found.created_at <= now - _ttl():
            # Expired, not yet swept: a new key. Only the row we saw is deleted.
            IdempotencyKey.objects.filter(pk=found.pk, attempt=found.attempt).delete()
            continue
        if found.request_path != request_path or found.fingerprint != fingerprint:
            return _reused()
        if found.state == IdempotencyKey.State.DONE:
            return _replay(found)
        if found.locked_at > now - timedelta(seconds=ABANDONED_AFTER_SECONDS):
            return _in_flight()
        taken = IdempotencyKey.objects.filter(
            pk=found.pk, attempt=found.attempt, state=IdempotencyKey.State.IN_FLIGHT
        ).update(attempt=attempt, locked_at=now)
        if taken:
            logger.warning("event=idempotency.takeover path=%s", request_path)
            return _Claim(found.pk, attempt)
    return _in_flight()


def _record(claim: _Claim, response: Response) -> bool:
    """Record the answer on the key if this attempt still holds it (in the write's
    transaction); False when another attempt took the key over."""
    body = "" if response.data is None else JSONRenderer().render(response.data).decode()
    return bool(
        IdempotencyKey.objects.filter(
            pk=claim.pk, attempt=claim.attempt, state=IdempotencyKey.State.IN_FLIGHT
        ).update(
            state=IdempotencyKey.State.DONE,
            response_status=response.status_code,
            response_body=body,
        )
    )


def _release(claim: _Claim) -> None:
    """Free the key after a 5xx, so that the client's retry runs the request again. If the
    database is down too, the key frees itself after ``ABANDONED_AFTER_SECONDS``."""
    try:
        with transaction.atomic():
            IdempotencyKey.objects.filter(
                pk=claim.pk, attempt=claim.attempt, state=IdempotencyKey.State.IN_FLIGHT
            ).delete()
    except Exception as exc:
        logger.warning("event=idempotency.release_failed error=%s", type(exc).__name__)


class _Undo(Exception):
    """Roll the write back and answer ``response`` instead."""

    def __init__(self, response: Response, *, release: bool) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.release = release


def _run[V: APIView, **P](
    handler: Callable[Concatenate[V, Request, P], Response],
    claim: _Claim,
    view: V,
    request: Request,
    *args: P.args,
    **kwargs: P.kwargs,
) -> Response:
    try:
        with transaction.atomic():  # the write and its recorded answer: one commit
            try:
                # A savepoint: a write that fails leaves the outer transaction usable for
                # recording its 4xx answer.
                with transaction.atomic():
                    response = handler(view, request, *args, **kwargs)
            except Exception as exc:
                # DRF's answer to it, as the view's dispatch would give (re-raises a bug).
                response = view.handle_exception(exc)
            if response.status_code >= 500:
                raise _Undo(response, release=True)
            if not _record(claim, response):
                logger.warning("event=idempotency.lost_claim path=%s", request.path)
                raise _Undo(_in_flight(), release=False)
    except _Undo as undo:
        if undo.release:
            _release(claim)
        return undo.response
    except BaseException:
        _release(claim)
        raise
    return response


def idempotent[F: Callable[..., Response]](handler: F) -> F:
    """Decorator for a DRF view's write handler (``post``): the ``Idempotency-Key`` rules of
    this module. Runs after DRF's sign-in, permission and throttle checks; a request without
    the header, or of an anonymous user, goes straight to the handler.

    Answers: the handler's (recorded when below 500); the recorded one with
    ``Idempotent-Replayed: true``; 400 ``idempotency_key_invalid``; 409
    ``idempotency_key_in_flight``; 422 ``idempotency_key_reused``. A body DRF cannot parse is
    DRF's 400, before the key is claimed.
    """

    @functools.wraps(handler)
    def wrapper(view: APIView, request: Request, *args: Any, **kwargs: Any) -> Response:
        raw = request.headers.get(HEADER)
        user = request.user
        if raw is None or not isinstance(user, AbstractBaseUser) or not user.is_authenticated:
            return handler(view, request, *args, **kwargs)
        try:
            key = parse_key(raw)
        except InvalidKey as exc:
            return _answer(400, CODE_INVALID, f"Bad Idempotency-Key: {exc}.")
        request_path = f"{request.method} {request.path}"[:1024]
        claim = _claim(user, key, request_path, request_fingerprint(request.data))
        if isinstance(claim, Response):
            return claim
        return _run(handler, claim, view, request, *args, **kwargs)

    return cast(F, wrapper)


def _ttl() -> timedelta:
    return timedelta(seconds=rt_settings().IDEMPOTENCY_KEY_TTL_SECONDS)


def delete_expired(now: datetime | None = None) -> int:
    """Delete the keys older than ``IDEMPOTENCY_KEY_TTL_SECONDS`` at ``now`` (default: now),
    in flight or done; returns how many."""
    cutoff = (now or timezone.now()) - _ttl()
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted


async def run_expiry() -> None:
    """Background service (leader only): ``delete_expired`` every
    ``EXPIRY_INTERVAL_SECONDS``; a failure (database down) is logged and retried next time."""
    while True:
        await asyncio.sleep(EXPIRY_INTERVAL_SECONDS)
        try:
            deleted = await database_sync_to_async(delete_expired)()
        except Exception as exc:
            logger.warning("event=idempotency.expiry_failed error=%s", type(exc).__name__)
            continue
        if deleted:
            logger.info("event=idempotency.expired keys=%d", deleted)


# --- OpenAPI (drf-spectacular) ---------------------------------------------------------------

#: The header, for ``extend_schema(parameters=[...])`` of an ``@idempotent`` operation.
IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    HEADER,
    type=str,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Makes a retry of this write safe (draft-ietf-httpapi-idempotency-key-header): 1 to "
        f"{MAX_KEY_LENGTH} printable ASCII characters, e.g. a UUID, new for each new "
        "request, per user. A retry with the same key and body gets the first answer again "
        f"(with `{REPLAYED_HEADER}: true`) and writes nothing; kept at least 24 h."
    ),
)

#: The response header of a replayed answer.
IDEMPOTENT_REPLAYED_PARAMETER = OpenApiParameter(
    REPLAYED_HEADER,
    type=str,
    location=OpenApiParameter.HEADER,
    response=True,
    description="`true` on an answer replayed from an earlier request with the same "
    "Idempotency-Key (nothing was written this time); absent otherwise.",
)
#: Both headers, for ``extend_schema(parameters=IDEMPOTENCY_PARAMETERS)``.
IDEMPOTENCY_PARAMETERS = [IDEMPOTENCY_KEY_PARAMETER, IDEMPOTENT_REPLAYED_PARAMETER]

_IdempotencyError = inline_serializer(
    "IdempotencyError",
    {"code": serializers.CharField(), "detail": serializers.CharField()},
)

#: The answers an ``@idempotent`` operation adds, for ``extend_schema(responses={...})``.
IDEMPOTENCY_RESPONSES: dict[int, OpenApiResponse] = {
    422: OpenApiResponse(
        _IdempotencyError,
        description="`idempotency_key_reused`: the Idempotency-Key was used for another "
        "request (method, path or body)",
    ),
}
#: 409 ``idempotency_key_in_flight`` (merge with an operation's own 409 when it has one).
IDEMPOTENCY_IN_FLIGHT = OpenApiResponse(
    _IdempotencyError,
    description="`idempotency_key_in_flight`: a request with this Idempotency-Key is still "
    "being processed",
)
