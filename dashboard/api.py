"""HTTP API of the dashboard: the feed switch.

``GET  /api/feed/``            ``{on, records}`` (signed-in users)
``POST /api/feed/ {on: bool}`` staff: flip the switch → ``{on, records}``
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services

FeedState = inline_serializer(
    "FeedState", {"on": serializers.BooleanField(), "records": serializers.IntegerField()}
)


class FeedSwitchSerializer(serializers.Serializer[Any]):
    on = serializers.BooleanField()


class FeedView(APIView):
    """The seed-000 feed: its switch and how many records it has added."""

    def get_permissions(self) -> list[Any]:
        return [IsAdminUser()] if self.request.method == "POST" else [IsAuthenticated()]

    @extend_schema(responses={200: FeedState})
    def get(self, request: Request) -> Response:
        return Response(selectors.feed_state())

    @extend_schema(request=FeedSwitchSerializer, responses={200: FeedState})
    def post(self, request: Request) -> Response:
        form = FeedSwitchSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        assert isinstance(request.user, User)  # IsAdminUser let it through
        return Response(services.feed_switch_set(on=form.validated_data["on"], actor=request.user))
