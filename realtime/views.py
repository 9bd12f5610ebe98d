"""HTTP endpoints of the real-time core."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from . import events
from .conf import rt_settings
from .publish import publish
from .registry import STREAM_NAME_MAX, STREAM_NAME_RE
from .tokens import issue_token


class TokenRequestSerializer(serializers.Serializer[Any]):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


TokenResponseSerializer = inline_serializer(
    "TokenResponse",
    {
        "access": serializers.CharField(),
        "token_type": serializers.CharField(),
        "expires_in": serializers.IntegerField(help_text="seconds"),
    },
)


class TokenView(APIView):
    """``POST /api/token/ {username, password}`` → ``{access, token_type, expires_in}``.

    ``access`` is a JWT for ``Authorization: Bearer`` and for sockets; ``expires_in`` is its
    lifetime in seconds. Wrong credentials answer 401 ``{"detail": ...}``; bad input 400.

    Two limits, both counted in the shared cache (every worker sees the same counts):
    - DRF's throttle, scope ``token`` (``TOKEN_RATE``), per client address (REMOTE_ADDR):
      429 ``{"detail": ...}`` with ``Retry-After``;
    - sign-in lockout (django-axes, ``LOGIN_FAILURE_LIMIT`` failures per username and per
      address): 429 ``{"detail": ..., "code": "locked_out"}`` with ``Retry-After``, the
      right password included, until ``LOGIN_COOLOFF_SECONDS`` pass
      (``townsquare.signin.lockout_response``, answered by ``AxesMiddleware``).
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "token"

    @extend_schema(request=TokenRequestSerializer, responses={200: TokenResponseSerializer})
    def post(self, request: Request) -> Response:
        form = TokenRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        # The Django request, by keyword: django-axes counts the failure under its address
        # and refuses a locked-out account before any password is checked.
        user = authenticate(
            request=request._request,
            username=form.validated_data["username"],
            password=form.validated_data["password"],
        )
        if user is None or not user.is_active:
            return Response(
                {"detail": "Unknown username or wrong password."},
                status=status.HTTP_401_UNAUTHORIZED,
            )
        token, ttl = issue_token(user)
        return Response({"access": token, "token_type": "Bearer", "expires_in": ttl})


class HasPublishKey(BasePermission):
    """Trusted backends only: ``X-Townsquare-Key: <PUBLISH_API_KEY>``, compared in constant
    time. With no key configured, nobody may publish."""

    message = "A valid X-Townsquare-Key header is required."

    def has_permission(self, request: Request, view: Any) -> bool:
        expected = rt_settings().PUBLISH_API_KEY
        given = request.headers.get("X-Townsquare-Key", "")
        return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


class PublishSerializer(serializers.Serializer[Any]):
    stream = serializers.RegexField(STREAM_NAME_RE, max_length=STREAM_NAME_MAX)
    event = serializers.RegexField(r"^[A-Za-z0-9_.\-]{1,64}$")
    # The request field is called "data", as in every publish API; it shadows Serializer.data,
    # which this input-only serializer never uses.
    data = serializers.JSONField()  # type: ignore[assignment]
    # Offsets are 64-bit (frames are encoded by orjson, which refuses larger integers).
    offset = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)

    def validate_data(self, value: Any) -> Any:
        try:
            encoded = orjson.dumps(value)
        except orjson.JSONEncodeError as exc:
            # An integer beyond 64 bits (or a lone surrogate): a frame cannot carry it.
            raise serializers.ValidationError(
                "data must be JSON with integers of at most 64 bits"
            ) from exc
        if len(encoded) > rt_settings().MAX_FRAME_BYTES:
            raise serializers.ValidationError("data is larger than MAX_FRAME_BYTES")
        return value


class PublishView(APIView):
    """``POST /api/publish/ {stream, event, data, offset?}`` → 202 ``{published: true}``.

    The server-side publish API of real-time servers: a trusted backend sends an event to any
    stream through ``realtime.publish.publish``, so every subscriber on every worker gets it.
    401/403 without the right key; 400 for a bad stream name, event name or oversized data,
    or, while event validation is on (DEBUG, tests), an event not declared with that shape;
    503 ``{published: false}`` when the channel layer refused it.
    """

    authentication_classes: list[Any] = []
    permission_classes = [HasPublishKey]

    @extend_schema(request=PublishSerializer, responses={202: None, 503: None})
    def post(self, request: Request) -> Response:
        form = PublishSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        if events.enabled:
            # The client's input, not a bug of ours: 400 (errors.map_exception), no ERROR line.
            events.validate(data["stream"], data["event"], data["data"], data.get("offset"))
        published = publish(data["stream"], data["event"], data["data"], offset=data.get("offset"))
        return Response(
            {"published": published},
            status=status.HTTP_202_ACCEPTED if published else status.HTTP_503_SERVICE_UNAVAILABLE,
        )
