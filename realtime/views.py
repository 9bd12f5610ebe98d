"""HTTP endpoints of the real-time core."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

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
    Throttled per client address (scope ``token``).
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "token"

    @extend_schema(request=TokenRequestSerializer, responses={200: TokenResponseSerializer})
    def post(self, request: Request) -> Response:
        form = TokenRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        user = authenticate(
            request._request,
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
