"""HTTP API of the inbox (DRF), for the signed-in user only.

``GET  /api/notifications/``               newest first, paginated (``?page=``)
``GET  /api/notifications/unread-count/``  ``{unread}``
``POST /api/notifications/<id>/read/``     mark one read → the notification
``POST /api/notifications/read-all/``      ``{marked, unread: 0}``
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .models import Notification


class NotificationSerializer(serializers.ModelSerializer[Notification]):
    class Meta:
        model = Notification
        fields = ["id", "offset", "kind", "title", "body", "data", "url", "created_at", "read_at"]
        read_only_fields = fields


class NotificationPagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


def _uid(request: Request) -> int:
    pk = request.user.pk  # every view here requires a signed-in user (DRF's default)
    assert isinstance(pk, int)
    return pk


UnreadResponse = inline_serializer("Unread", {"unread": serializers.IntegerField()})


class NotificationListView(generics.ListAPIView[Notification]):
    """The signed-in user's notifications, newest first."""

    serializer_class = NotificationSerializer
    pagination_class = NotificationPagination

    def get_queryset(self) -> QuerySet[Notification]:
        return selectors.notification_list(user_id=_uid(self.request))


class UnreadCountView(APIView):
    """How many notifications are unread."""

    @extend_schema(responses={200: UnreadResponse})
    def get(self, request: Request) -> Response:
        return Response({"unread": selectors.unread_count(user_id=_uid(request))})


class MarkReadView(APIView):
    """Mark one notification read (404 if it is not the user's)."""

    @extend_schema(request=None, responses={200: NotificationSerializer})
    def post(self, request: Request, pk: int) -> Response:
        try:
            notification = services.notification_mark_read(
                user_id=_uid(request), notification_id=pk
            )
        except Notification.DoesNotExist as exc:
            raise NotFound("No such notification.") from exc
        return Response(NotificationSerializer(notification).data)


class MarkAllReadView(APIView):
    """Mark every notification read."""

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "MarkedAll",
                {"marked": serializers.IntegerField(), "unread": serializers.IntegerField()},
            )
        },
    )
    def post(self, request: Request) -> Response:
        marked = services.notification_mark_all_read(user_id=_uid(request))
        return Response({"marked": marked, "unread": 0})
