"""HTTP API of the chat app (DRF). Session (with CSRF) or ``Authorization: Bearer <JWT>``.

``GET  /api/rooms/``                      rooms the user sees (joined + public), by name,
                                          ``page_size`` (default 100, at most 500) a page;
                                          the next/previous pages in the ``Link`` header
``POST /api/rooms/``                      ``{name, is_private?}`` → 201 the room; 400 a bad
                                          or taken name, 403, 429 over the quota
``GET  /api/rooms/<id>/messages/``        newest first, cursor pagination (``?cursor=``)
``POST /api/rooms/<id>/messages/``        ``{text, client_id?}`` → 201, pushed live too
``POST /api/rooms/<id>/join/`` / ``leave/``  membership of public rooms
``PATCH  /api/rooms/<id>/messages/<mid>/``  ``{text}`` → 200 the message (author only)
``DELETE /api/rooms/<id>/messages/<mid>/``  → 204 (author, staff, room moderator)
``POST /api/rooms/<id>/messages/<mid>/reactions/``  ``{emoji, on?}`` → 200 ``{id, reactions}``
``POST /api/rooms/<id>/read/``            ``{offset}`` → ``{room, last_read, unread}``: the
                                          read cursor, forward only (as ``chat.read``)

A room that does not exist, an id outside ``1..2**63-1`` and a private room of which the user
is not a member all answer the same 404 ``{"detail": "No such room."}``: a non-member learns
nothing of a private room (OWASP API Security Top 10, API1 "Broken Object Level
Authorization": answer as if the object did not exist).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.api_errors import api_error
from realtime.idempotency import (
    IDEMPOTENCY_IN_FLIGHT,
    IDEMPOTENCY_PARAMETERS,
    IDEMPOTENCY_RESPONSES,
    idempotent,
)

from . import selectors, services
from .models import Message, Room

NO_SUCH_ROOM = "No such room."


class RoomSerializer(serializers.ModelSerializer[Room]):
    is_member = serializers.BooleanField(read_only=True)
    stream = serializers.CharField(read_only=True)

    class Meta:
        model = Room
        fields = ["id", "name", "is_private", "is_member", "last_offset", "stream"]


class ReadSerializer(serializers.Serializer[Any]):
    """``POST /api/rooms/<id>/read/``: ``{offset}``, a JSON integer of at least 0 (not a
    string, not a boolean); above the room's newest offset it is clamped."""

    offset = serializers.IntegerField(
        min_value=0, help_text="read up to this offset (clamped to the room's newest)"
    )

    def validate_offset(self, value: int) -> int:
        raw = self.initial_data.get("offset") if hasattr(self.initial_data, "get") else None
        if type(raw) is not int:
            raise serializers.ValidationError("A JSON integer is required.")
        return value


class ReadStateSerializer(serializers.Serializer[Any]):
    """The answer of ``POST /api/rooms/<id>/read/`` (and ``chat.read``'s ack)."""

    room = serializers.IntegerField()
    last_read = serializers.IntegerField(help_text="the cursor now (it never moves back)")
    unread = serializers.IntegerField(
        help_text="messages after last_read, neither deleted nor the user's own"
    )


class RoomCreateSerializer(serializers.Serializer[Any]):
    """``POST /api/rooms/``: the name is checked by ``services.room_create``."""

    name = serializers.CharField(
        max_length=services.ROOM_NAME_MAX,
        trim_whitespace=False,
        help_text=f"{services.ROOM_NAME_RULE}; unique ignoring case",
    )
    is_private = serializers.BooleanField(
        default=False, help_text="private rooms are created by staff only"
    )


class ErrorSerializer(serializers.Serializer[Any]):
    """An error answer: ``{"detail": str, "code"?: str}`` (DRF's shape)."""

    detail = serializers.CharField()
    code = serializers.CharField(required=False)


class RoomCreateErrorSerializer(serializers.Serializer[Any]):
    """A 400 of ``POST /api/rooms/``: the messages for each field refused."""

    name = serializers.ListField(child=serializers.CharField(), required=False)
    is_private = serializers.ListField(child=serializers.CharField(), required=False)


class AuthorSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    username = serializers.CharField()


class MessageSerializer(serializers.ModelSerializer[Message]):
    """A message in its current state: ``edited_at`` (null if never edited), ``deleted``
    (then ``text`` is ""), ``reactions`` ``{emoji: [user ids]}`` (prefetched by the list)."""

    author = AuthorSerializer(read_only=True)
    room = serializers.IntegerField(source="room_id", read_only=True)
    deleted = serializers.SerializerMethodField()
    reactions = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id",
            "room",
            "offset",
            "author",
            "text",
            "client_id",
            "created_at",
            "edited_at",
            "deleted",
            "reactions",
        ]
        read_only_fields = ["id", "room", "offset", "author", "created_at", "edited_at"]
        extra_kwargs = {"client_id": {"required": False}}

    def get_deleted(self, message: Message) -> bool:
        return message.deleted_at is not None

    @extend_schema_field(
        serializers.DictField(
            child=serializers.ListField(child=serializers.IntegerField()),
            help_text="{emoji: [user ids]}, emojis in the order of their first reaction",
        )
    )
    def get_reactions(self, message: Message) -> dict[str, list[int]]:
        return selectors.message_reactions(message)


class LastMessageSerializer(serializers.Serializer[Any]):
    """A room's newest message in its current state (``selectors.message_preview_data``):
    a deleted one is a tombstone, ``text`` "" and ``deleted`` true."""

    id = serializers.IntegerField()
    offset = serializers.IntegerField()
    author = AuthorSerializer()
    text = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    deleted = serializers.BooleanField()


class RoomListItemSerializer(RoomSerializer):
    """A room of ``GET /api/rooms/``, with the signed-in user's read state: ``last_read``
    (their cursor, 0 = nothing read), ``unread`` (messages after it, neither deleted nor
    theirs) and ``last_message`` (or null). Reads the annotations of
    ``selectors.room_annotate_read_state`` and the ``messages`` map in its context."""

    last_read = serializers.IntegerField(read_only=True)
    unread = serializers.IntegerField(read_only=True)
    last_message = serializers.SerializerMethodField()

    class Meta(RoomSerializer.Meta):
        fields = [*RoomSerializer.Meta.fields, "last_read", "unread", "last_message"]

    @extend_schema_field(LastMessageSerializer(allow_null=True))
    def get_last_message(self, room: Room) -> dict[str, Any] | None:
        messages: dict[int, Message] = self.context.get("messages", {})
        return selectors.message_preview_data(messages.get(room.last_message_id))  # type: ignore[attr-defined]


class CheckedCursorPagination(CursorPagination):
    """A cursor pagination that refuses a cursor whose position could not come from it
    (a forged ``?cursor=``) with DRF's 404 "Invalid cursor", before it reaches a query:
    a non-number compared with an integer column is a ``ValueError`` (500), and a NUL in a
    text is refused by PostgreSQL."""

    def position_valid(self, position: str) -> bool:
        """Whether ``position`` could be a value of the ordering field."""
        raise NotImplementedError

    def decode_cursor(self, request: Request) -> Cursor | None:
        cursor = super().decode_cursor(request)
        position = None if cursor is None else cursor.position
        if position is not None and not self.position_valid(str(position)):
            raise NotFound(self.invalid_cursor_message)
        return cursor


class MessageCursorPagination(CheckedCursorPagination):
    ordering = "-offset"
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"

    def position_valid(self, position: str) -> bool:
        return position.isascii() and position.isdigit() and int(position) <= 2**63 - 1


class RoomLinkPagination(CheckedCursorPagination):
    """Rooms by name, ``page_size`` (default 100, at most 500) a page.

    The body stays the JSON array of rooms that clients of ``GET /api/rooms/`` read; the
    other pages are in the ``Link`` header (RFC 8288: ``<url>; rel="next"``,
    ``<url>; rel="prev"``), as GitHub's API pages its lists. Cursor pagination: stable
    under inserts, and its cost does not grow with the page number.
    """

    ordering = "name"
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"

    def position_valid(self, position: str) -> bool:
        return selectors.room_name_lookup_valid(position)

    def get_paginated_response(self, data: Any) -> Response:
        links = [
            f'<{url}>; rel="{rel}"'
            for url, rel in ((self.get_next_link(), "next"), (self.get_previous_link(), "prev"))
            if url
        ]
        return Response(data, headers={"Link": ", ".join(links)} if links else None)

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return schema


def _not_found(exc: Exception) -> Exception:
    # A private room's non-member gets the unknown room's answer (the shared mapping,
    # realtime.errors, with forbidden shown as not found).
    return api_error(exc, not_found=NO_SUCH_ROOM, forbidden_as_not_found=True)


def _readable_room(request: Request, room_id: int) -> Room:
    """The room, or 404 when it does not exist or is private and the user not a member."""
    try:
        return selectors.room_get_readable(user=request.user, room_id=room_id)
    except (Room.DoesNotExist, DjangoPermissionDenied) as exc:
        raise _not_found(exc) from exc


LINK_HEADER = OpenApiParameter(
    "Link",
    type=str,
    location=OpenApiParameter.HEADER,
    response=[200],
    description='The other pages (RFC 8288): `<url>; rel="next"`, `<url>; rel="prev"`; '
    "absent when there is one page.",
)
RETRY_AFTER_HEADER = OpenApiParameter(
    "Retry-After",
    type=int,
    location=OpenApiParameter.HEADER,
    response=[429],
    description="Seconds until the user may create a room again.",
)


class RoomListView(generics.ListCreateAPIView[Room]):
    """Rooms the user has joined and every public room, by name; POST creates one."""

    serializer_class = RoomListItemSerializer
    pagination_class = RoomLinkPagination

    def get_queryset(self) -> QuerySet[Room]:
        user = self.request.user
        rooms = selectors.room_list_for_user(user=user)  # type: ignore[arg-type]
        return selectors.room_annotate_read_state(rooms, user=user)  # type: ignore[arg-type]

    @extend_schema(parameters=[LINK_HEADER])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A page of rooms in two queries whatever its size: the rooms with their read state
        (subqueries), then their last messages (``selectors.message_map``)."""
        page = self.paginate_queryset(self.get_queryset())
        rooms = list(page or [])
        messages = selectors.message_map(r.last_message_id for r in rooms)  # type: ignore[attr-defined]
        data = RoomListItemSerializer(rooms, many=True, context={"messages": messages}).data
        return self.get_paginated_response(data)

    @extend_schema(
        request=RoomCreateSerializer,
        parameters=[RETRY_AFTER_HEADER],
        responses={
            201: RoomSerializer,
            400: OpenApiResponse(
                RoomCreateErrorSerializer, description="a bad name, or a room of that name exists"
            ),
            403: OpenApiResponse(
                ErrorSerializer, description="a private room asked for by a non-staff user"
            ),
            429: OpenApiResponse(
                ErrorSerializer, description="over ROOM_CREATE_QUOTA rooms in the last hour"
            ),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create a room through ``services.room_create`` (name rule, per-user quota)."""
        form = RoomCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            room = services.room_create(
                user=request.user,
                name=form.validated_data["name"],
                is_private=form.validated_data["is_private"],
            )
        except services.RoomQuotaExceeded as exc:
            # DRF adds "Expected available in <n> seconds." and the Retry-After header.
            raise Throttled(
                wait=exc.retry_after, detail=f"You may create {exc.quota} rooms per hour."
            ) from exc
        except (DjangoPermissionDenied, DjangoValidationError) as exc:
            raise api_error(exc, field="name") from exc
        room.is_member = False  # type: ignore[attr-defined]
        return Response(RoomSerializer(room).data, status=status.HTTP_201_CREATED)


class MessageListCreateView(generics.ListCreateAPIView[Message]):
    """A room's messages, newest first; POST sends one through the same service as ``/ws/``."""

    serializer_class = MessageSerializer
    pagination_class = MessageCursorPagination

    def get_queryset(self) -> QuerySet[Message]:
        room = _readable_room(self.request, self.kwargs["room_id"])
        return selectors.message_queryset().filter(room=room)

    @extend_schema(
        parameters=IDEMPOTENCY_PARAMETERS,
        responses={
            200: OpenApiResponse(
                MessageSerializer, description="a client_id already used: the stored message"
            ),
            201: MessageSerializer,
            409: IDEMPOTENCY_IN_FLIGHT,
            **IDEMPOTENCY_RESPONSES,
        },
    )
    @idempotent
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Send a message; with an ``Idempotency-Key``, a retry gets the first answer."""
        return self.create(request, *args, **kwargs)

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
        except (Room.DoesNotExist, DjangoPermissionDenied) as exc:
            # A private room's non-member gets the unknown room's answer.
            raise _not_found(exc) from exc
        except DjangoValidationError as exc:
            raise api_error(exc, field="text") from exc
        # A client_id this user already sent in this room: the stored message, not a new one.
        code = status.HTTP_200_OK if message.duplicate else status.HTTP_201_CREATED
        return Response(MessageSerializer(message).data, status=code)


class RoomMembershipView(APIView):
    """``POST join/`` or ``leave/``: membership of a public room → the room.

    404 for an unknown room and for a private room the user is not a member of (its name
    and size stay hidden); a member may leave a private room.
    """

    action: str = "join"

    @extend_schema(request=None, responses={200: RoomSerializer})
    def post(self, request: Request, room_id: int) -> Response:
        room = _readable_room(request, room_id)
        service = services.room_join if self.action == "join" else services.room_leave
        try:
            room = service(user=request.user, room_id=room.pk)  # type: ignore[arg-type]
        except (Room.DoesNotExist, DjangoPermissionDenied) as exc:
            raise _not_found(exc) from exc
        room.is_member = self.action == "join"  # type: ignore[attr-defined]
        return Response(RoomSerializer(room).data)


class RoomReadView(APIView):
    """``POST /api/rooms/<id>/read/ {offset}``: move the user's read cursor forward
    (``services.read_cursor_advance``, as the socket's ``chat.read``); their other sockets
    get ``chat.unread`` on ``user:<id>``.

    404 for an unknown room and for a private room the user is not a member of.
    """

    @extend_schema(
        request=ReadSerializer,
        responses={
            200: ReadStateSerializer,
            400: OpenApiResponse(
                ErrorSerializer, description="offset missing, not an integer, or below 0"
            ),
            404: OpenApiResponse(ErrorSerializer, description="no such room (or not yours)"),
        },
    )
    def post(self, request: Request, room_id: int) -> Response:
        form = ReadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            last_read, unread = services.read_cursor_advance(
                user=request.user, room_id=room_id, offset=form.validated_data["offset"]
            )
        except (Room.DoesNotExist, DjangoPermissionDenied) as exc:
            raise _not_found(exc) from exc
        except DjangoValidationError as exc:
            raise api_error(exc, field="offset") from exc
        return Response({"room": room_id, "last_read": last_read, "unread": unread})


# --- Edits, deletes and reactions (docs/protocol.md: chat.edit, chat.delete, chat.react) ------

NO_SUCH_MESSAGE = "No such message."


class MessageEditSerializer(serializers.Serializer[Any]):
    """``PATCH /api/rooms/<id>/messages/<mid>/``: the new text (``services.message_edit``
    checks it again: a JSON string, not blank, stripped, no NUL)."""

    text = serializers.CharField(
        max_length=services.MAX_TEXT_LENGTH, help_text="the new text, 1 to 4,000 characters"
    )


class MessageEditErrorSerializer(serializers.Serializer[Any]):
    """A 400 of ``PATCH …/messages/<mid>/``: the messages for the text."""

    text = serializers.ListField(child=serializers.CharField(), required=False)


class ReactErrorSerializer(serializers.Serializer[Any]):
    """A 400 of ``POST …/reactions/``: the messages for each field refused."""

    emoji = serializers.ListField(child=serializers.CharField(), required=False)
    on = serializers.ListField(child=serializers.CharField(), required=False)


class ReactSerializer(serializers.Serializer[Any]):
    """``POST /api/rooms/<id>/messages/<mid>/reactions/`` (``services.message_react``)."""

    emoji = serializers.CharField(
        max_length=services.EMOJI_MAX,
        trim_whitespace=False,
        help_text=f"1 to {services.EMOJI_MAX} characters, no whitespace or control characters",
    )
    on = serializers.BooleanField(
        required=False,
        allow_null=True,
        help_text="a JSON boolean: set (true) or remove (false) the reaction, retry-safe; "
        "absent or null: toggle it",
    )


class ReactionsSerializer(serializers.Serializer[Any]):
    """The answer of ``POST …/reactions/``: the message's reactions now."""

    id = serializers.IntegerField()
    reactions = serializers.DictField(
        child=serializers.ListField(child=serializers.IntegerField()),
        help_text="{emoji: [user ids]}, emojis in the order of their first reaction",
    )


def _change_error(exc: Exception, field: str | None = None) -> Exception:
    # A message of a private room the user cannot read answers as an unknown one: the
    # services raise Message.DoesNotExist for both.
    return api_error(exc, field=field, not_found=NO_SUCH_MESSAGE)


def _raw(request: Request, name: str) -> object:
    """The field as the client sent it: the services check its JSON type themselves (DRF's
    fields would turn ``5`` into ``"5"`` and ``"yes"`` into ``True``)."""
    data = request.data
    return data.get(name) if hasattr(data, "get") else None


class MessageDetailView(APIView):
    """``PATCH`` edits a message's text (its author only); ``DELETE`` deletes it (author,
    staff or a moderator of the room): the same services as ``chat.edit``/``chat.delete``,
    published to the room's stream.

    404 for an unknown message, a message of another room, and any message of a private
    room the user is not a member of; PATCH on a deleted message is 404 too.
    """

    @extend_schema(
        request=MessageEditSerializer,
        responses={
            200: OpenApiResponse(MessageSerializer, description="the message, edited"),
            400: OpenApiResponse(
                MessageEditErrorSerializer,
                description="text missing, not a string, blank or too long",
            ),
            403: OpenApiResponse(ErrorSerializer, description="not the message's author"),
            404: OpenApiResponse(
                ErrorSerializer, description="no such message (or deleted, or not readable)"
            ),
        },
    )
    def patch(self, request: Request, room_id: int, message_id: int) -> Response:
        """Edit the text; the same text changes nothing (no event)."""
        MessageEditSerializer(data=request.data).is_valid(raise_exception=True)
        try:
            result = services.message_edit(
                user=request.user,
                message_id=message_id,
                text=_raw(request, "text"),
                room_id=room_id,
            )
        except (Message.DoesNotExist, DjangoPermissionDenied, DjangoValidationError) as exc:
            raise _change_error(exc, field="text") from exc
        return Response(MessageSerializer(result.message).data)

    @extend_schema(
        request=None,
        responses={
            204: OpenApiResponse(description="deleted (or it already was)"),
            403: OpenApiResponse(
                ErrorSerializer, description="neither the author, staff nor a moderator"
            ),
            404: OpenApiResponse(ErrorSerializer, description="no such message"),
        },
    )
    def delete(self, request: Request, room_id: int, message_id: int) -> Response:
        """Delete: a tombstone at the same offset (text and reactions gone)."""
        try:
            services.message_delete(user=request.user, message_id=message_id, room_id=room_id)
        except (Message.DoesNotExist, DjangoPermissionDenied, DjangoValidationError) as exc:
            raise _change_error(exc) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class MessageReactionsView(APIView):
    """``POST {emoji, on?}``: toggle (or set) the user's reaction on a message, as
    ``chat.react``; anyone who may read the room may react. 404 as ``MessageDetailView``
    (deleted messages included)."""

    @extend_schema(
        request=ReactSerializer,
        parameters=IDEMPOTENCY_PARAMETERS,
        responses={
            200: ReactionsSerializer,
            400: OpenApiResponse(
                ReactErrorSerializer, description="a bad emoji or on, or too many reactions"
            ),
            404: OpenApiResponse(ErrorSerializer, description="no such message"),
            409: IDEMPOTENCY_IN_FLIGHT,
            **IDEMPOTENCY_RESPONSES,
        },
    )
    @idempotent
    def post(self, request: Request, room_id: int, message_id: int) -> Response:
        """Toggle or set; with an ``Idempotency-Key``, a retried toggle toggles once."""
        ReactSerializer(data=request.data).is_valid(raise_exception=True)
        on = _raw(request, "on")
        if on is not None and type(on) is not bool:
            raise serializers.ValidationError({"on": ["Must be a JSON boolean or null."]})
        try:
            result = services.message_react(
                user=request.user,
                message_id=message_id,
                emoji=_raw(request, "emoji"),
                on=on,
                room_id=room_id,
            )
        except (Message.DoesNotExist, DjangoPermissionDenied, DjangoValidationError) as exc:
            raise _change_error(exc, field="emoji") from exc
        return Response({"id": result.message.pk, "reactions": result.reactions})
