"""HTTP API of the chat app (DRF). Session or ``Authorization: Bearer <JWT>``.

``GET  /api/rooms/``                      rooms the user sees (joined + public)
``GET  /api/rooms/<id>/messages/``        newest first, cursor pagination (``?cursor=``)
``POST /api/rooms/<id>/messages/``        ``{text, client_id?}`` → 201, pushed live too
``POST /api/rooms/<id>/join/`` / ``leave/``  membership of public rooms
Private rooms answer 403 to non-members; unknown rooms 404.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .models import Message, Room


class RoomSerializer(serializers.ModelSerializer[Room]):
    is_member = serializers.BooleanField(read_only=True)
    stream = serializers.CharField(read_only=True)

    class Meta:
        model = Room
        fields = ["id", "name", "is_private", "is_member", "last_offset", "stream"]


class AuthorSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    username = serializers.CharField()


class MessageSerializer(serializers.ModelSerializer[Message]):
    author = AuthorSerializer(read_only=True)
    room = serializers.IntegerField(source="room_id", read_only=True)

    class Meta:
        model = Message
        fields = ["id", "room", "offset", "author", "text", "client_id", "created_at"]
        read_only_fields = ["id", "room", "offset", "author", "created_at"]
        extra_kwargs = {"client_id": {"required": False}}


class MessageCursorPagination(CursorPagination):
    ordering = "-offset"
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"


def _readable_room(request: Request, room_id: int) -> Room:
    try:
        return selectors.room_get_readable(user=request.user, room_id=room_id)
    except Room.DoesNotExist as exc:
        raise NotFound("No such room.") from exc
    except DjangoPermissionDenied as exc:
        raise PermissionDenied(str(exc)) from exc


class RoomListView(generics.ListAPIView[Room]):
    """Rooms the user has joined and every public room, by name."""

    serializer_class = RoomSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[Room]:
        return selectors.room_list_for_user(user=self.request.user)  # type: ignore[arg-type]


class MessageListCreateView(generics.ListCreateAPIView[Message]):
    """A room's messages, newest first; POST sends one through the same service as ``/ws/``."""

    serializer_class = MessageSerializer
    pagination_class = MessageCursorPagination

    def get_queryset(self) -> QuerySet[Message]:
        room = _readable_room(self.request, self.kwargs["room_id"])
        return Message.objects.filter(room=room).select_related("author")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = MessageSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            message = services.message_create(
                user=request.user,
                room_id=self.kwargs["room_id"],
                text=form.validated_data["text"],
                client_id=form.validated_data.get("client_id", ""),
            )
        except Room.DoesNotExist as exc:
            raise NotFound("No such room.") from exc
        except DjangoPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        except DjangoValidationError as exc:
            raise ValidationError({"text": exc.messages}) from exc
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)


class RoomMembershipView(APIView):
    """``POST join/`` or ``leave/``: membership of a public room → the room."""

    action: str = "join"

    @extend_schema(request=None, responses={200: RoomSerializer})
    def post(self, request: Request, room_id: int) -> Response:
        service = services.room_join if self.action == "join" else services.room_leave
        try:
            room = service(user=request.user, room_id=room_id)  # type: ignore[arg-type]
        except Room.DoesNotExist as exc:
            raise NotFound("No such room.") from exc
        except DjangoPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        room.is_member = self.action == "join"  # type: ignore[attr-defined]
        return Response(RoomSerializer(room).data)
