"""The ``chat:room:<id>`` stream kind and the ``chat.send`` action, registered with the core.

Events on ``chat:room:<id>``:
    ``chat.message`` (durable, ``offset`` = the room's sequence number): ``message_event_data``.
    ``chat.member_joined`` / ``chat.member_left``: ``{user: {id, username}}``.
    ``chat.members`` (snapshot on subscribe): ``{members: [{id, username}]}``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from realtime.actions import ActionContext, action
from realtime.events import Payload, UserRef, declare, declare_action, describe_kind
from realtime.protocol import ErrorCode, ProtocolError
from realtime.registry import AnyUser, Event, register_stream

from . import selectors
from .models import Room
from .writer import get_writer

RFC3339 = msgspec.Meta(extra_json_schema={"format": "date-time"})


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
    """The room's messages after offset ``since``, oldest first."""
    messages = selectors.message_list_after(room_id=_room_id(key), since=since, limit=limit)
    return [Event("chat.message", selectors.message_event_data(m), m.offset) for m in messages]


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
