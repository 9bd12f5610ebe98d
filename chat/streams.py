"""The ``chat:room:<id>`` stream kind and the ``chat.send`` action, registered with the core.

Events on ``chat:room:<id>``:
    ``chat.message`` (durable, ``offset`` = the room's sequence number): ``message_event_data``.
    ``chat.message_edited`` / ``chat.message_deleted`` / ``chat.reactions`` (durable: each
    change takes the room's next offset too; ``services.message_edit`` and the others).
    ``chat.member_joined`` / ``chat.member_left``: ``{user: {id, username}}``.
    ``chat.members`` (snapshot on subscribe): ``{members: [{id, username}]}``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from channels.db import database_sync_to_async
from django.core.exceptions import PermissionDenied

from realtime.actions import ActionContext, action
from realtime.events import Payload, UserRef, declare, declare_action, describe_kind
from realtime.protocol import ErrorCode, ProtocolError
from realtime.registry import AnyUser, Event, register_stream

from . import selectors, services
from .models import Room
from .writer import get_writer

RFC3339 = msgspec.Meta(extra_json_schema={"format": "date-time"})
#: ``{emoji: [user id, …]}``: emojis in the order of their first reaction, users in the order
#: they reacted.
Reactions = dict[str, list[int]]


class ChatMessage(Payload):
    """``chat.message`` data (``selectors.message_event_data``)."""

    id: int
    room: int
    #: Equals the frame's ``offset``.
    offset: int
    author: UserRef
    text: str
    client_id: str
    created_at: Annotated[str, RFC3339]
    #: The last edit's time, or None. Defaults keep older publishers' payloads valid.
    edited_at: Annotated[str, RFC3339] | None = None
    #: A deleted message keeps its offset; its ``text`` is ``""``.
    deleted: bool = False
    reactions: Reactions = msgspec.field(default_factory=dict)


class MessageEdited(Payload):
    """``chat.message_edited`` data: the message's new text."""

    id: int
    text: str
    edited_at: Annotated[str, RFC3339]


class MessageDeleted(Payload):
    """``chat.message_deleted`` data: the message is a tombstone from now on (text ``""``,
    no reactions)."""

    id: int
    deleted_at: Annotated[str, RFC3339]


class ReactionsChanged(Payload):
    """``chat.reactions`` data: the message's reactions now (full state, not a delta)."""

    id: int
    reactions: Reactions


class MemberChange(Payload):
    """``chat.member_joined`` / ``chat.member_left`` data."""

    user: UserRef


class Members(Payload):
    """``chat.members`` data: the room's members, by username."""

    members: list[UserRef]


describe_kind(
    "chat:room",
    address="chat:room:{id}",
    description="One stream per chat room; id is the room's id.",
)
declare(
    "chat:room",
    "chat.message",
    ChatMessage,
    durable=True,
    summary="A message, at its offset: the room's sequence number, 1, 2, 3, … without gaps.",
)
declare("chat:room", "chat.member_joined", MemberChange, summary="A user became a member.")
declare("chat:room", "chat.member_left", MemberChange, summary="A user stopped being a member.")
declare(
    "chat:room",
    "chat.members",
    Members,
    snapshot=True,
    summary="Snapshot on every subscribe: the room's members, by username.",
)
declare(
    "chat:room",
    "chat.message_edited",
    MessageEdited,
    durable=True,
    summary="A message's text was edited, at an offset of its own (after the message's).",
)
declare(
    "chat:room",
    "chat.message_deleted",
    MessageDeleted,
    durable=True,
    summary="A message was deleted: its text and reactions are gone; its offset stays.",
)
declare(
    "chat:room",
    "chat.reactions",
    ReactionsChanged,
    durable=True,
    summary="A message's reactions changed: all of them now, {emoji: [user ids]}.",
)


class SendFrame(Payload):
    """``chat.send`` fields (checked by the handler and ``services.message_check``)."""

    room: int
    text: Annotated[str, msgspec.Meta(max_length=4000)]
    client_id: Annotated[str, msgspec.Meta(max_length=64)] | msgspec.UnsetType = msgspec.UNSET


class SendAck(Payload):
    """``chat.send``'s ``ack`` fields."""

    client_id: str
    stream: str
    id: int
    offset: int


declare_action(
    "chat.send",
    SendFrame,
    SendAck,
    summary="Send a message to a room; it arrives as chat.message on chat:room:<room>.",
)


def _room_id(key: str) -> int:
    # isdigit() alone admits "²"; int() would then raise.
    if not (key.isascii() and key.isdigit()):
        raise ProtocolError(ErrorCode.NOT_FOUND, "rooms are named chat:room:<id>")
    return int(key)


def authorize_room(user: AnyUser, key: str) -> None:
    """Members of private rooms and any signed-in user for public rooms may subscribe."""
    if not user.is_authenticated:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "sign in to read rooms")
    selectors.room_get_readable(user=user, room_id=_room_id(key))


def replay_room(key: str, since: int, limit: int) -> list[Event]:
    """The room's events after offset ``since``, oldest first, at most ``limit``: its
    messages (``chat.message``, current state) and changes (edits, deletes, reactions, as
    published) merged by offset. Three queries (messages, their reactions, changes)."""
    room_id = _room_id(key)
    messages = selectors.message_list_after(room_id=room_id, since=since, limit=limit)
    changes = selectors.change_list_after(room_id=room_id, since=since, limit=limit)
    merged = [
        Event("chat.message", selectors.message_event_data(m), m.offset) for m in messages
    ] + [Event(c.event, c.data, c.offset) for c in changes]
    merged.sort(key=lambda event: event.offset or 0)
    return merged[:limit]


def snapshot_room(user: AnyUser, key: str) -> list[Event]:
    """The member list, sent on every subscribe."""
    room = selectors.room_get_readable(user=user, room_id=_room_id(key))
    return [Event("chat.members", {"members": selectors.room_member_names(room=room)})]


def head_room(key: str) -> int:
    """The room's newest offset."""
    offset = Room.objects.filter(pk=_room_id(key)).values_list("last_offset", flat=True).first()
    return offset or 0


register_stream(
    "chat:room",
    authorize=authorize_room,
    replay=replay_room,
    snapshot=snapshot_room,
    presence=True,
    head=head_room,
)


# Pipelined: the socket goes on reading while its message waits for the group commit
# (chat.writer), so the messages a sender has in flight are written together, in order.
@action("chat.send", pipelined=True)
async def send_message(ctx: ActionContext, frame: dict[str, Any]) -> dict[str, Any]:
    """``chat.send {room: int, text: str, client_id?: str}`` → ``ack {client_id, stream, id,
    offset, duplicate}``; the message itself arrives as a ``chat.message`` event on the room's
    stream. A ``client_id`` the user already sent in the room stores nothing: the ack names
    the first message, with ``duplicate: true`` (retry safely after a lost ack).

    Errors: ``invalid`` (bad room/text/client_id), ``unauthenticated``, ``forbidden``
    (private room), ``not_found``, ``unavailable`` (database down; nothing written).
    """
    room_id = frame.get("room")
    if type(room_id) is not int:
        raise ProtocolError(ErrorCode.INVALID, "room must be an integer room id")
    if not ctx.user.is_authenticated:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "sign in to send messages")
    message = await get_writer().write(
        user=ctx.user, room_id=room_id, text=frame.get("text"), client_id=frame.get("client_id")
    )
    return {
        "client_id": message.client_id,
        "stream": f"chat:room:{room_id}",
        "id": message.pk,
        "offset": message.offset,
        # The client_id was used before: this is the first send's message, stored once.
        "duplicate": message.duplicate,
    }


# --- Read cursors (docs/protocol.md, "Read cursors") -----------------------------------------


class UnreadChanged(Payload):
    """``chat.unread`` data: the user's read state of one room after their cursor moved."""

    room: int
    unread: int
    last_read: int


# Declared into the ``user`` kind by its name: the notifications app describes and registers
# ``user:<id>`` (owner-only inbox), and chat must not import notifications (import contract
# "apps-independent"). A kind is a string shared through the core's registry, so declaring
# an event on it needs nothing of the app that owns it; without that app installed the kind
# is simply not subscribable, and publishing stays valid (realtime.events.lookup).
declare(
    "user",
    "chat.unread",
    UnreadChanged,
    summary="Your read cursor in a chat room moved (on any of your devices): the room's "
    "unread count and last_read offset now.",
)


class ReadFrame(Payload):
    """``chat.read`` fields (checked by the handler and ``services.read_cursor_advance``)."""

    room: int
    offset: Annotated[int, msgspec.Meta(ge=0)]


class ReadAck(Payload):
    """``chat.read``'s ``ack`` fields."""

    room: int
    last_read: int
    unread: int


declare_action(
    "chat.read",
    ReadFrame,
    ReadAck,
    summary="Mark a room read up to an offset (forward only, clamped to the room's newest); "
    "your other sockets get chat.unread on user:<id>.",
)


@action("chat.read")
async def read_room(ctx: ActionContext, frame: dict[str, Any]) -> dict[str, Any]:
    """``chat.read {room: int, offset: int}`` → ``ack {room, last_read, unread}``.

    Forward only: an offset below the cursor changes nothing and acks the current state;
    one above the room's newest offset is clamped to it. Not pipelined: the ack follows the
    write, and a client awaits it before trusting the count.

    Errors: ``invalid`` (room or offset not an integer, offset below 0), ``unauthenticated``,
    ``not_found`` (no such room, or a private room the user is not a member of: the same
    answer, so a non-member learns nothing of it), ``unavailable``.
    """
    room_id, offset = frame.get("room"), frame.get("offset")
    if type(room_id) is not int:
        raise ProtocolError(ErrorCode.INVALID, "room must be an integer room id")
    if type(offset) is not int or offset < 0:
        raise ProtocolError(ErrorCode.INVALID, "offset must be an integer of at least 0")
    if not ctx.user.is_authenticated:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "sign in to read rooms")
    try:
        last_read, unread = await database_sync_to_async(services.read_cursor_advance)(
            user=ctx.user, room_id=room_id, offset=offset
        )
    except (Room.DoesNotExist, PermissionDenied) as exc:
        raise ProtocolError(ErrorCode.NOT_FOUND, "no such room") from exc
    return {"room": room_id, "last_read": last_read, "unread": unread}


# --- Edits, deletes and reactions (docs/protocol.md: chat.edit, chat.delete, chat.react) ------


class EditFrame(Payload):
    """``chat.edit`` fields (checked by ``services.message_edit``)."""

    message: int
    text: Annotated[str, msgspec.Meta(max_length=4000)]


class DeleteFrame(Payload):
    """``chat.delete`` fields."""

    message: int


class ReactFrame(Payload):
    """``chat.react`` fields (``services.emoji_check``)."""

    message: int
    emoji: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    #: Absent: toggle the caller's emoji; true/false: set it on/off (retry-safe).
    on: bool | msgspec.UnsetType = msgspec.UNSET


class ChangeAck(Payload):
    """``chat.edit``'s and ``chat.delete``'s ``ack`` fields."""

    id: int
    #: The change's offset; when nothing changed, the offset of the message's latest event.
    offset: int
    changed: bool


class ReactAck(ChangeAck):
    """``chat.react``'s ``ack`` fields."""

    reactions: Reactions


declare_action(
    "chat.edit",
    EditFrame,
    ChangeAck,
    summary="Edit your message's text; chat.message_edited on its room's stream.",
)
declare_action(
    "chat.delete",
    DeleteFrame,
    ChangeAck,
    summary="Delete a message (author, staff or room moderator); chat.message_deleted.",
)
declare_action(
    "chat.react",
    ReactFrame,
    ReactAck,
    summary="Toggle (or, with on, set) your emoji on a message; chat.reactions.",
)


def _message_id(frame: dict[str, Any]) -> int:
    message_id = frame.get("message")
    if type(message_id) is not int:
        raise ProtocolError(ErrorCode.INVALID, "message must be an integer message id")
    return message_id


def _change_ack(result: services.MessageChanged) -> dict[str, Any]:
    return {"id": result.message.pk, "offset": result.offset, "changed": result.changed}


# Not pipelined: a change is one short transaction, and its ack must follow it (a client
# that edits then reacts expects them applied in that order).
@action("chat.edit")
async def edit_message(ctx: ActionContext, frame: dict[str, Any]) -> dict[str, Any]:
    """``chat.edit {message: int, text: str}`` → ``ack {id, offset, changed}``; the room's
    subscribers get ``chat.message_edited`` at ``offset``. Author only.

    Errors: ``invalid`` (bad message id or text), ``unauthenticated``, ``forbidden`` (not
    the author), ``not_found`` (no such message, deleted, or not readable), ``unavailable``.
    """
    message_id = _message_id(frame)
    if not ctx.user.is_authenticated:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "sign in to edit messages")
    result = await database_sync_to_async(services.message_edit)(
        user=ctx.user, message_id=message_id, text=frame.get("text")
    )
    return _change_ack(result)


@action("chat.delete")
async def delete_message(ctx: ActionContext, frame: dict[str, Any]) -> dict[str, Any]:
    """``chat.delete {message: int}`` → ``ack {id, offset, changed}``; the room's
    subscribers get ``chat.message_deleted`` at ``offset``. Author, staff or a moderator of
    the room; deleting again acks ``changed: false``.

    Errors: ``invalid``, ``unauthenticated``, ``forbidden``, ``not_found``, ``unavailable``.
    """
    message_id = _message_id(frame)
    if not ctx.user.is_authenticated:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "sign in to delete messages")
    result = await database_sync_to_async(services.message_delete)(
        user=ctx.user, message_id=message_id
    )
    return _change_ack(result)


@action("chat.react")
async def react_to_message(ctx: ActionContext, frame: dict[str, Any]) -> dict[str, Any]:
    """``chat.react {message: int, emoji: str, on?: bool}`` → ``ack {id, offset, changed,
    reactions}``; the room's subscribers get ``chat.reactions`` at ``offset`` when it
    changed. Without ``on`` it toggles the caller's emoji; with it, sets it (retry-safe).

    Errors: ``invalid`` (bad message id, emoji or on), ``unauthenticated``, ``not_found``
    (no such message, deleted, or not readable), ``unavailable``.
    """
    message_id = _message_id(frame)
    if not ctx.user.is_authenticated:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "sign in to react")
    result = await database_sync_to_async(services.message_react)(
        user=ctx.user,
        message_id=message_id,
        emoji=frame.get("emoji"),
        on=frame.get("on"),
    )
    return {**_change_ack(result), "reactions": result.reactions}
