"""Writes of the chat app. Each runs in one transaction and publishes after commit."""

from __future__ import annotations

import copy
import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    connection,
    transaction,
)
from django.utils import timezone

from realtime.publish import Published, publish_many_on_commit, publish_on_commit

from .models import Message, MessageChange, Reaction, ReadCursor, Room
from .selectors import (
    ROOM_ID_MAX,
    message_event_data,
    message_latest_offset,
    message_reactions,
    read_cursor_offset,
    room_can_moderate,
    room_get_by_name,
    room_get_readable,
    room_id_valid,
    room_is_member,
    unread_count,
)

logger = logging.getLogger(__name__)

MAX_TEXT_LENGTH = 4000
MAX_CLIENT_ID_LENGTH = 64
ROOM_NAME_MAX = 60
#: A new room's name: 1 to 60 word characters (Unicode letters, digits, ``_``) or ``-``:
#: the seed-003 socket route's pattern (chat/routing.py), so every room created can be
#: reached at ``/chat/<name>/`` and ``ws/chat/<name>/``. No spaces, dots, slashes or
#: control characters (so no NUL reaches a query, no ``.``/``..`` path segment).
ROOM_NAME_RE = re.compile(rf"[\w-]{{1,{ROOM_NAME_MAX}}}")
ROOM_NAME_RULE = f"1 to {ROOM_NAME_MAX} letters, digits, '-' or '_'"
#: Default of the ``ROOM_CREATE_QUOTA`` setting: rooms one user may create per hour.
ROOM_CREATE_QUOTA_DEFAULT = 10
ROOM_CREATE_WINDOW = timedelta(hours=1)


def _user_data(user: User) -> dict[str, object]:
    return {"id": user.pk, "username": user.get_username()}


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message checked by ``message_check`` and not yet stored."""

    user: User
    room_id: int
    text: str
    client_id: str


def message_check(
    *,
    user: AbstractBaseUser | AnonymousUser,
    room_id: int,
    text: object,
    client_id: object = "",
) -> NewMessage:
    """Validate a message to send (no database access).

    Raises:
        ValidationError: ``text`` is not a non-blank string of at most 4,000 characters, or
            ``client_id`` is not a string of at most 64, or either holds NUL.
        PermissionDenied: anonymous user.
        Room.DoesNotExist: ``room_id`` is outside ``1..ROOM_ID_MAX`` (no room can have it;
            refused here, so that it never reaches the group commit's SQL, where SQLite
            would fail the whole batch with ``OverflowError``).
    """
    if type(room_id) is not int or not 1 <= room_id <= ROOM_ID_MAX:
        raise Room.DoesNotExist(f"no room {room_id}")
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("text must be a non-empty string")
    text = text.strip()
    if len(text) > MAX_TEXT_LENGTH:
        raise ValidationError(f"text must be at most {MAX_TEXT_LENGTH} characters")
    if client_id is None:
        client_id = ""
    if not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID_LENGTH:
        raise ValidationError(f"client_id must be a string of at most {MAX_CLIENT_ID_LENGTH}")
    if "\x00" in text or "\x00" in client_id:
        # PostgreSQL refuses NUL in text columns; caught here, it fails this message only,
        # not the whole group commit it would have joined.
        raise ValidationError("text and client_id must not contain NUL characters")
    if not user.is_authenticated:
        raise PermissionDenied("sign in to send messages")
    assert isinstance(user, User)
    return NewMessage(user=user, room_id=room_id, text=text, client_id=client_id)


def message_create(
    *,
    user: AbstractBaseUser | AnonymousUser,
    room_id: int,
    text: object,
    client_id: object = "",
) -> Message:
    """Store a message and publish ``chat.message`` on ``chat:room:<id>`` after commit.

    ``message_check``, then ``message_create_many`` with that one message.

    Raises:
        ValidationError: ``text`` is not a non-blank string of at most 4,000 characters, or
            ``client_id`` is not a string of at most 64.
        PermissionDenied: anonymous user, or a non-member of a private room.
        Room.DoesNotExist: no such room.
        DatabaseError: the database failed; nothing was stored.
    """
    checked = message_check(user=user, room_id=room_id, text=text, client_id=client_id)
    (result,) = message_create_many([checked])
    if isinstance(result, Exception):
        raise result
    return result


def message_create_many(batch: Sequence[NewMessage]) -> list[Message | Exception]:
    """Store checked messages, in order, in one transaction (group commit); publish each
    ``chat.message`` after commit, in offset order per room.

    Idempotent per ``(room, client_id, author)``: a message whose non-empty ``client_id``
    its author already used in that room (stored before, or earlier in the same batch) is
    not stored again; its result is the first message with ``duplicate = True``, and nothing
    is published for it. The partial unique constraint finds the repeat (across workers
    too): it fails the batch's INSERT, and the one-by-one rewrite below returns the first.

    One message's failure is its own: when the database refuses the batch
    (``IntegrityError``, ``DataError``: a value it will not take, a user deleted meanwhile, a
    concurrent duplicate), each message is written again in a transaction of its own, so the
    others are stored and only the guilty one gets its error (a ``ValidationError``).

    Per room, one ``UPDATE ... RETURNING`` takes as many offsets as the batch has messages
    for it: the row stays locked (PostgreSQL) or the database write-locked (SQLite, IMMEDIATE
    transactions) until commit, so a room's offsets are gapless and unique, and a rollback
    gives them back. Rooms are taken in id order, so two batches never wait on each other
    in a cycle (PostgreSQL deadlocks). Then one multi-row ``INSERT`` for the whole batch.
    Statements for a batch of n messages in r public rooms: r + 2 (with the commit), where
    one transaction per message took 3n: the database thread that every socket shares
    spends its time on a few statements and one commit per batch (docs/performance.md).

    Returns, for each message in ``batch``, the stored ``Message`` or the exception that
    refused it: ``Room.DoesNotExist`` (no such room), ``PermissionDenied`` (a non-member of
    a private room), ``ValidationError`` (the database refused that message). The others
    are stored all the same.

    A bug that one message triggers (an unexpected exception) is that message's result
    alone, found the same way.

    Raises:
        DatabaseError: the database failed (unreachable, timed out, out of disk); nothing of
            the batch was stored.
    """
    try:
        # Optimistic: no query looks for duplicates or gone authors first. A repeated
        # client_id trips the unique constraint, a deleted author the foreign key; either
        # fails the INSERT, and then each message is written alone, checked.
        return _create_batch(batch, checked=False)
    except (IntegrityError, DataError) as exc:
        # Refused (a repeat, a deleted author, a value the database will not take): find
        # whose, by writing each alone.
        if len(batch) > 1:
            logger.info("a batch of %s messages was refused (%r); one by one", len(batch), exc)
        return [_create_alone(item) for item in batch]
    except (DatabaseError, InterfaceError):
        raise  # the database failed (unreachable, out of disk): nothing stored, for anyone
    except Exception as exc:
        # A bug that one message triggers: it must not fail, or close, anyone else's.
        logger.warning("a batch of %s messages failed on %r; one by one", len(batch), exc)
        return [_create_alone(item) for item in batch]


def _create_alone(item: NewMessage) -> Message | Exception:
    # A failed batch, one message at a time. A concurrent duplicate commits between two
    # tries, so a later one finds it; anything else is this message's own fault, and is
    # answered to its sender only (an unmapped exception closes that sender's socket alone).
    error: Exception | None = None
    for _attempt in range(2):
        try:
            return _create_batch([item], checked=True)[0]
        except (IntegrityError, DataError) as exc:
            error = exc
        except (DatabaseError, InterfaceError):
            raise
        except Exception as exc:
            logger.exception("a message failed on a bug")
            return exc
    logger.info("a message was refused by the database: %r", error)
    return ValidationError("the database refused this message")


def _find_duplicates(
    batch: Sequence[NewMessage],
) -> tuple[dict[int, Message], dict[int, int]]:
    # Messages of the batch whose client_id was used before (index -> the stored message)
    # or earlier in the batch (index -> the index of the first). One query, only when some
    # message carries a client_id.
    keyed = [(i, item) for i, item in enumerate(batch) if item.client_id]
    if not keyed:
        return {}, {}
    stored = (
        Message.objects.filter(
            room_id__in={item.room_id for _, item in keyed},
            client_id__in={item.client_id for _, item in keyed},
        )
        # The unique index is partial (client_id != ''): this term lets the query use it.
        .exclude(client_id="")
        .select_related("author")
    )
    found = {(m.room_id, m.client_id, m.author_id): m for m in stored}
    before: dict[int, Message] = {}
    twins: dict[int, int] = {}
    first: dict[tuple[int, str, int], int] = {}
    for index, item in keyed:
        key = (item.room_id, item.client_id, item.user.pk)
        if key in found:
            before[index] = found[key]
        elif key in first:
            twins[index] = first[key]
        else:
            first[key] = index
    return before, twins


def _inactive_authors(batch: Sequence[NewMessage]) -> set[int]:
    authors = {item.user.pk for item in batch}
    active = User.objects.filter(pk__in=authors, is_active=True).values_list("pk", flat=True)
    return authors - set(active)


def _create_batch(batch: Sequence[NewMessage], *, checked: bool) -> list[Message | Exception]:
    # checked: first look for repeated client_ids and for authors deactivated or deleted since
    # their socket connected (two queries); without, the database's constraints catch both.
    results: list[Message | Exception | None] = [None] * len(batch)
    by_room: dict[int, list[int]] = {}
    for index, item in enumerate(batch):
        by_room.setdefault(item.room_id, []).append(index)
    messages: list[Message] = []
    with transaction.atomic():
        before, twins = _find_duplicates(batch) if checked else ({}, {})
        for index, message in before.items():
            message.duplicate = True
            results[index] = message
        # A socket's user was read when it connected (their sockets close when they are
        # deactivated or deleted: realtime.signout): a message already on its way fails
        # alone here instead of failing the batch on the foreign key.
        gone = _inactive_authors(batch) if checked else set()
        for index, item in enumerate(batch):
            if item.user.pk in gone and index not in before:
                results[index] = PermissionDenied("your account is no longer active")
        if before or twins or gone:
            for room_id, indexes in list(by_room.items()):
                by_room[room_id] = [
                    i for i in indexes if i not in before and i not in twins and results[i] is None
                ]
                if not by_room[room_id]:
                    del by_room[room_id]
        for room_id in sorted(by_room):
            indexes = by_room[room_id]
            taken = _take_offsets(room_id, len(indexes)) if room_id_valid(room_id) else None
            if taken is None:
                for index in indexes:
                    results[index] = Room.DoesNotExist(f"no room {room_id}")
                continue
            last, is_private = taken
            if is_private:
                members = _members(room_id, {batch[i].user.pk for i in indexes})
                refused = [i for i in indexes if batch[i].user.pk not in members]
                for index in refused:
                    results[index] = PermissionDenied("this room is private to its members")
                if refused:
                    indexes = [i for i in indexes if i not in refused]
                    last -= len(refused)
                    Room.objects.filter(pk=room_id).update(last_offset=last)
            first = last - len(indexes) + 1
            for offset, index in enumerate(indexes, start=first):
                item = batch[index]
                message = Message(
                    room_id=room_id,
                    author=item.user,
                    text=item.text,
                    offset=offset,
                    client_id=item.client_id,
                )
                results[index] = message
                messages.append(message)
        if messages:
            Message.objects.bulk_create(messages)
            events = [
                Published(
                    f"chat:room:{m.room_id}",
                    "chat.message",
                    message_event_data(m, reactions={}),  # new: no reactions yet, no query
                    m.offset,
                )
                for m in messages
            ]
            publish_many_on_commit(events)
        for index, twin in twins.items():
            original = results[twin]
            if isinstance(original, Message):
                repeat = copy.copy(original)
                repeat.duplicate = True
                results[index] = repeat
            else:  # the first send was refused: so is its repeat
                results[index] = original
    return [r for r in results if r is not None]  # every index was given its result


def _take_offsets(room_id: int, count: int) -> tuple[int, bool] | None:
    """Add ``count`` to the room's ``last_offset`` inside the caller's transaction; return
    the new ``last_offset`` and whether the room is private, or None if there is no room.

    One statement, where a locking read and a write took two. The ORM's ``update()``
    returns no values, hence SQL (``RETURNING``: PostgreSQL; SQLite 3.35+).
    """
    table = connection.ops.quote_name(Room._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_offset = last_offset + %s WHERE id = %s"
            " RETURNING last_offset, is_private",
            [count, room_id],
        )
        row = cursor.fetchone()
    return None if row is None else (int(row[0]), bool(row[1]))


def _members(room_id: int, user_ids: set[int]) -> set[int]:
    """Which of ``user_ids`` are members of the room (one query)."""
    through = Room.members.through.objects
    return set(
        through.filter(room_id=room_id, user_id__in=user_ids).values_list("user_id", flat=True)
    )


def room_join(*, user: User, room_id: int) -> Room:
    """Make ``user`` a member of a public room; publish ``chat.member_joined`` if new.

    Raises:
        Room.DoesNotExist: no such room.
        PermissionDenied: the room is private (members are added by staff).
    """
    with transaction.atomic():
        room = Room.objects.get(pk=room_id)
        if room_is_member(user=user, room=room):
            return room
        if room.is_private:
            raise PermissionDenied("private rooms are joined by invitation")
        room.members.add(user)
        publish_on_commit(room.stream, "chat.member_joined", {"user": _user_data(user)})
    return room


def room_leave(*, user: User, room_id: int) -> Room:
    """Remove ``user`` from a room's members; publish ``chat.member_left`` if they were one.

    Raises:
        Room.DoesNotExist: no such room.
    """
    with transaction.atomic():
        room = Room.objects.get(pk=room_id)
        if not room_is_member(user=user, room=room):
            return room
        room.members.remove(user)
        publish_on_commit(room.stream, "chat.member_left", {"user": _user_data(user)})
    return room


class RoomQuotaExceeded(Exception):
    """The user created ``ROOM_CREATE_QUOTA`` rooms in the last hour (HTTP 429).

    ``retry_after``: whole seconds until the oldest of those rooms leaves the window.
    """

    def __init__(self, quota: int, retry_after: int) -> None:
        super().__init__(
            f"you may create {quota} rooms per hour; try again in {retry_after} seconds"
        )
        self.quota = quota
        self.retry_after = retry_after


def room_name_check(name: object) -> str:
    """Return ``name`` if it is a valid name for a new room (``ROOM_NAME_RULE``).

    Nothing is stripped: a name with spaces around it is refused, not silently changed.

    Raises:
        ValidationError (code ``invalid_name``): not a string matching ``ROOM_NAME_RE``.
    """
    if not isinstance(name, str) or not ROOM_NAME_RE.fullmatch(name):
        raise ValidationError(f"a room name has {ROOM_NAME_RULE}", code="invalid_name")
    return name


def room_create_quota() -> int:
    """The ``ROOM_CREATE_QUOTA`` setting: rooms per user per hour (default 10; 0 = none)."""
    return int(getattr(settings, "ROOM_CREATE_QUOTA", ROOM_CREATE_QUOTA_DEFAULT))


def room_create(
    *, user: AbstractBaseUser | AnonymousUser, name: object, is_private: bool = False
) -> Room:
    """Create a room called ``name``, with no members (as before: joining is a separate,
    published step, ``room_join``; staff add a private room's members).

    The one path by which rooms are created (the page's confirm button, ``POST /api/rooms/``,
    the seed-003 socket, the admin, ``manage.py demo``).

    - Name: ``room_name_check`` (1–60 letters, digits, ``-``, ``_``). Unique ignoring case
      (``iexact``: every Unicode letter on PostgreSQL, ASCII letters on SQLite); two
      concurrent requests for ``Lobby`` and ``lobby`` on PostgreSQL can both pass the check
      (the column's own constraint is case-sensitive; no migration adds a case-folded one).
    - Quota: at most ``ROOM_CREATE_QUOTA`` rooms per user in any hour, counted from
      ``Room.created_by``/``created_at``; the user's row is locked while counting, so
      concurrent requests cannot overshoot it. Staff are exempt (operators create rooms in
      bulk, and the admin would otherwise fail on the quota).
    - Private rooms: staff only (private rooms are joined by invitation, which staff give).

    Raises:
        PermissionDenied: anonymous or inactive user, or a non-staff user asking for a
            private room.
        ValidationError: code ``invalid_name`` (the name rule) or ``name_taken`` (a room of
            that name, ignoring case, exists).
        RoomQuotaExceeded: over the quota (map to HTTP 429 with ``Retry-After``).
    """
    if not user.is_authenticated or not user.is_active:
        raise PermissionDenied("sign in to create rooms")
    assert isinstance(user, User)
    if is_private and not user.is_staff:
        raise PermissionDenied("private rooms are created by staff")
    name = room_name_check(name)
    taken = ValidationError(f"a room called {name!r} exists", code="name_taken")
    quota = room_create_quota()
    try:
        with transaction.atomic():
            if quota and not user.is_staff:
                _check_quota(user, quota)
            if Room.objects.filter(name__iexact=name).exists():
                raise taken
            room = Room.objects.create(name=name, is_private=is_private, created_by=user)
            # Whoever opens a room may keep it tidy: its first moderator (message_delete).
            room.moderators.add(user)
    except IntegrityError as exc:  # the same name, created concurrently
        raise taken from exc
    return room


def _check_quota(user: User, quota: int) -> None:
    """Raise ``RoomQuotaExceeded`` if ``user`` created ``quota`` rooms in the last hour.

    Locks the user's row until the caller's transaction ends (PostgreSQL; SQLite writes are
    serialized anyway), so a burst of concurrent requests counts one at a time.
    """
    list(User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
    since = timezone.now() - ROOM_CREATE_WINDOW
    recent = list(
        Room.objects.filter(created_by=user, created_at__gte=since)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:quota]
    )
    if len(recent) >= quota:
        oldest = recent[-1]
        wait = (oldest + ROOM_CREATE_WINDOW - timezone.now()).total_seconds()
        raise RoomQuotaExceeded(quota, max(1, int(wait) + 1))


def room_open_by_name(*, user: AbstractBaseUser | AnonymousUser, name: str) -> Room:
    """The room called ``name`` (``room_get_by_name``), or a new public one by
    ``room_create`` (seed 003's socket connect, which names the room in its URL).

    Raises what ``room_create`` raises; ``ValidationError`` code ``name_taken`` does not
    escape (a concurrent creation wins, and its room is returned).
    """
    try:
        return room_get_by_name(name=name)
    except Room.DoesNotExist:
        pass
    try:
        return room_create(user=user, name=name)
    except ValidationError as exc:
        if exc.code != "name_taken":
            raise
        return room_get_by_name(name=name)


def room_members_change(
    *, room_id: int, add: Sequence[int] = (), remove: Sequence[int] = (), by: User | None
) -> tuple[list[int], list[int]]:
    """Add and remove members of any room, private ones included (staff invite); publish
    ``chat.member_joined`` for each user who became a member and ``chat.member_left`` for
    each who stopped being one, after commit.

    For a private room, each removed user's open subscriptions end after commit on every
    worker with ``error {code: "unsubscribed"}`` (``chat.receivers``, which sees every change
    of ``Room.members``). Users already in (or not in) the room are left alone, so calling
    it twice changes nothing. A user in both ``add`` and ``remove`` is removed. Returns the
    ids added and removed, ascending. Two queries and two membership writes at most,
    whatever the number of users.

    Raises:
        PermissionDenied: ``by`` is not staff (``None`` means the system itself).
        Room.DoesNotExist: no such room.
    """
    if by is not None and not by.is_staff:
        raise PermissionDenied("only staff may change a room's members")
    with transaction.atomic():
        room = Room.objects.get(pk=room_id)
        wanted_out = set(remove)
        wanted_in = set(add) - wanted_out
        current = _members(room_id, wanted_in | wanted_out)
        added = sorted(wanted_in - current)
        removed = sorted(wanted_out & current)
        if not added and not removed:
            return [], []
        users = {u.pk: u for u in User.objects.filter(pk__in=added + removed)}
        added = [pk for pk in added if pk in users]  # no such user: nothing to add
        if added:
            room.members.add(*added)
        if removed:
            room.members.remove(*removed)
        events = [
            Published(room.stream, "chat.member_joined", {"user": _user_data(users[pk])})
            for pk in added
        ] + [
            Published(room.stream, "chat.member_left", {"user": _user_data(users[pk])})
            for pk in removed
        ]
        publish_many_on_commit(events)
    return added, removed


def room_members_set(*, room_id: int, user_ids: Sequence[int], by: User | None) -> None:
    """Make ``user_ids`` exactly the room's members, through ``room_members_change`` (the
    difference only: events for who joined and who left, revocation for who left a private
    room).

    Raises what ``room_members_change`` raises.
    """
    with transaction.atomic():
        current = set(
            Room.members.through.objects.filter(room_id=room_id).values_list("user_id", flat=True)
        )
        wanted = set(user_ids)
        room_members_change(
            room_id=room_id, add=sorted(wanted - current), remove=sorted(current - wanted), by=by
        )


def room_moderators_set(*, room_id: int, user_ids: Sequence[int], by: User | None) -> None:
    """Make ``user_ids`` exactly the room's moderators: who may delete any of its messages
    besides their authors and staff (``message_delete``). Nothing is published: moderation
    shows only as the Delete a room page offers, decided when the page is rendered.

    ``by`` is the operator (kept for symmetry with the members' service; the admin is the
    only caller and admits staff only).

    Raises:
        Room.DoesNotExist: no such room.
    """
    with transaction.atomic():
        room = Room.objects.select_for_update().get(pk=room_id)
        room.moderators.set(user_ids)


def room_member_remove(*, room_id: int, user: User, by: User | None) -> bool:
    """Remove ``user`` from a room (staff's removal, unlike ``room_leave``); publish
    ``chat.member_left`` and, for a private room, end their subscriptions (see
    ``room_members_change``). Returns whether they were a member.

    Raises what ``room_members_change`` raises.
    """
    _, removed = room_members_change(room_id=room_id, remove=[user.pk], by=by)
    return bool(removed)


def room_delete(*, room_id: int, by: User | None) -> None:
    """Delete a room with its messages (its whole stream: no offset of it survives, so there
    is no gap to see). Members are removed first, so subscribers of a private room are told
    ``unsubscribed`` after commit (a cascade would delete the memberships silently).

    Raises:
        PermissionDenied: ``by`` is not staff.
        Room.DoesNotExist: no such room.
    """
    if by is not None and not by.is_staff:
        raise PermissionDenied("only staff may delete rooms")
    with transaction.atomic():
        room = Room.objects.get(pk=room_id)
        room.members.clear()
        room.delete()


# --- Read cursors (docs/protocol.md, "Read cursors"; chat.selectors.ReadState) ---------------


def read_cursor_advance(
    *, user: AbstractBaseUser | AnonymousUser, room_id: int, offset: object
) -> tuple[int, int]:
    """Move the user's read cursor in a room forward to ``offset``; return ``(last_read,
    unread)`` as they are afterwards.

    ``offset`` is clamped to the room's ``last_offset`` (a client cannot read ahead); a lower
    offset than the cursor's changes nothing and returns the current state (a stale tab
    never moves another device's cursor back). When the cursor moved, ``chat.unread {room,
    unread, last_read}`` goes to the user's ``user:<id>`` stream after commit, so their other
    tabs and devices update at once. ``unread`` counts the room's messages after
    ``last_read`` that are neither deleted nor the user's own (``selectors.unread_count``).

    Queries: the room (and membership, for a private room), one upsert, the count (and the
    cursor, when it did not move).

    Raises:
        ValidationError: ``offset`` is not an int (bools refused) of at least 0.
        PermissionDenied: anonymous user, or a non-member of a private room.
        Room.DoesNotExist: no such room (ids outside ``1..ROOM_ID_MAX`` without a query).
    """
    if type(offset) is not int or offset < 0:
        raise ValidationError("offset must be an integer of at least 0")
    if not user.is_authenticated or user.pk is None:
        raise PermissionDenied("sign in to read rooms")
    with transaction.atomic():
        room = room_get_readable(user=user, room_id=room_id)
        target = min(offset, room.last_offset)
        # Offset 0 is where a cursor without a row already is: nothing to write.
        moved = target > 0 and _read_cursor_upsert(user_id=user.pk, room_id=room.pk, offset=target)
        last_read = target if moved else read_cursor_offset(user_id=user.pk, room_id=room.pk)
        unread = unread_count(user_id=user.pk, room_id=room.pk, after=last_read)
        if moved:
            # Ephemeral: the count is a state, and the user's next read (or the room list)
            # carries it again. Two concurrent moves may publish out of order; clients keep
            # the event with the larger last_read.
            publish_on_commit(
                f"user:{user.pk}",
                "chat.unread",
                {"room": room.pk, "unread": unread, "last_read": last_read},
            )
    return last_read, unread


def _read_cursor_upsert(*, user_id: int, room_id: int, offset: int) -> bool:
    """Set the (user, room) cursor to ``offset`` unless it is already there or further: one
    statement; True when a row was inserted or moved.

    SQL, as the ORM cannot say it: ``bulk_create(update_conflicts=True)`` writes ``SET offset
    = EXCLUDED.offset`` unconditionally, which would let a stale tab move the cursor back.
    ``INSERT ... ON CONFLICT (user_id, room_id) DO UPDATE ... WHERE cursor < new RETURNING``
    is PostgreSQL's and SQLite's (3.35+) alike, and atomic under concurrency: the unique
    constraint serializes two first reads, and the conditional update makes the forward-only
    rule hold whatever the order of concurrent calls (no read-check-write).
    """
    quote = connection.ops.quote_name
    table = quote(ReadCursor._meta.db_table)
    column = quote("offset")  # a reserved word in SQL
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (user_id, room_id, {column}, updated_at)"
            " VALUES (%s, %s, %s, %s)"
            f" ON CONFLICT (user_id, room_id) DO UPDATE"
            f" SET {column} = excluded.{column}, updated_at = excluded.updated_at"
            f" WHERE {table}.{column} < excluded.{column}"
            f" RETURNING {column}",
            [user_id, room_id, offset, now],
        )
        return cursor.fetchone() is not None


# --- Edits, deletes and reactions (docs/protocol.md: chat.edit, chat.delete, chat.react) ------
#
# Each change is durable, like a message: it takes the room's next offset with
# ``_take_offsets`` (the group commit's conditional UPDATE of the room's row, so a change
# waits for a batch of messages of its room and the reverse, and offsets stay gapless over
# messages and changes together), updates the message's current state, stores a
# ``MessageChange`` holding the event as published, and publishes it after commit at that
# offset. A change that changes nothing (same text, deleted again, a reaction already set)
# gives its offset back and publishes nothing.

#: Longest reaction, in characters (``Reaction.emoji``).
EMOJI_MAX = 32
#: Most different emojis one user may put on one message (bounds ``chat.reactions``' size).
REACTIONS_PER_USER_MAX = 20


@dataclass(frozen=True, slots=True)
class MessageChanged:
    """What ``message_edit``, ``message_delete`` or ``message_react`` did.

    ``message``: the message's current state (author joined). ``offset``: the change's
    offset; when nothing changed (``changed`` false), the offset of the message's latest
    event. ``reactions``: ``{emoji: [user id]}`` now (``message_react`` only; else None).
    """

    message: Message
    offset: int
    changed: bool
    reactions: dict[str, list[int]] | None = None


def _message_id_check(message_id: object) -> int:
    """``message_id`` if it could name a message. Raises ``ValidationError`` (not an int)
    or ``Message.DoesNotExist`` (outside ``1..ROOM_ID_MAX``: no query could find it)."""
    if type(message_id) is not int:
        raise ValidationError("message must be an integer message id")
    if not 1 <= message_id <= ROOM_ID_MAX:
        raise Message.DoesNotExist(f"no message {message_id}")
    return message_id


def _edit_text_check(text: object) -> str:
    """``text`` stripped, by ``message_check``'s rules. Raises ``ValidationError``."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("text must be a non-empty string")
    text = text.strip()
    if len(text) > MAX_TEXT_LENGTH:
        raise ValidationError(f"text must be at most {MAX_TEXT_LENGTH} characters")
    if any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in text):
        raise ValidationError("text must not contain NUL characters or lone surrogates")
    return text


def emoji_check(emoji: object) -> str:
    """``emoji`` if it is a valid reaction: a string of 1 to ``EMOJI_MAX`` characters with
    no whitespace, control character or lone surrogate (zero-width joiners and variation
    selectors, which emoji sequences use, are allowed). Raises ``ValidationError``."""
    if not isinstance(emoji, str) or not 1 <= len(emoji) <= EMOJI_MAX:
        raise ValidationError(f"emoji must be a string of 1 to {EMOJI_MAX} characters")
    if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cs") for c in emoji):
        raise ValidationError("emoji must not contain whitespace or control characters")
    return emoji


def _readable_message(
    user: AbstractBaseUser | AnonymousUser, message_id: int, room_id: int | None
) -> tuple[Message, User]:
    """The message, if ``user`` may read its room (and it is in ``room_id``, when given),
    and the user.

    Raises:
        PermissionDenied: anonymous user.
        Message.DoesNotExist: no such message, another room's, or in a private room of
            which the user is not a member (the same answer: nothing is learnt of it).
    """
    if not user.is_authenticated:
        raise PermissionDenied("sign in to change messages")
    assert isinstance(user, User)
    message = Message.objects.filter(pk=message_id).first()
    if message is None or (room_id is not None and message.room_id != room_id):
        raise Message.DoesNotExist(f"no message {message_id}")
    try:
        room_get_readable(user=user, room_id=message.room_id)
    except (Room.DoesNotExist, PermissionDenied) as exc:
        raise Message.DoesNotExist(f"no message {message_id}") from exc
    return message, user


#: ``apply(message)`` of ``_change``: changes the locked message, returns the event and its
#: data, or None when nothing changed; raises to refuse (the transaction rolls back).
_Apply = Callable[[Message], "tuple[str, dict[str, Any]] | None"]


def _change(message: Message, apply: _Apply) -> tuple[Message, int, bool]:
    """Take the room's next offset, re-read the message under the room's lock, ``apply``;
    store and publish its event at that offset, or give the offset back. Returns the message
    (fresh), the offset (the change's, else the message's latest) and whether it changed.
    Must run inside a transaction."""
    taken = _take_offsets(message.room_id, 1)
    if taken is None:  # the room was deleted meanwhile
        raise Message.DoesNotExist(f"no message {message.pk}")
    offset, _ = taken
    # Read after the room's row is locked: the state every earlier change committed.
    fresh = Message.objects.select_related("author").filter(pk=message.pk).first()
    if fresh is None:
        raise Message.DoesNotExist(f"no message {message.pk}")
    change = apply(fresh)
    if change is None:
        Room.objects.filter(pk=fresh.room_id).update(last_offset=offset - 1)
        return fresh, message_latest_offset(fresh), False
    event, data = change
    MessageChange.objects.create(
        room_id=fresh.room_id, offset=offset, message=fresh, event=event, data=data
    )
    publish_on_commit(f"chat:room:{fresh.room_id}", event, data, offset=offset)
    return fresh, offset, True


def message_edit(
    *,
    user: AbstractBaseUser | AnonymousUser,
    message_id: object,
    text: object,
    room_id: int | None = None,
) -> MessageChanged:
    """Replace a message's text (its author only); publish ``chat.message_edited {id, text,
    edited_at}`` at the change's offset after commit. The same text (after stripping)
    changes nothing: no event, ``changed`` false.

    ``room_id``: the room the caller named (the HTTP API's URL); another room's message is
    not found.

    Raises:
        ValidationError: ``message_id`` not an int; ``text`` not a non-blank string of at
            most 4,000 characters without NUL.
        PermissionDenied: anonymous user, or not the message's author.
        Message.DoesNotExist: no such message, deleted, or not readable by ``user``.
        DatabaseError: the database failed; nothing was written.
    """
    message_id = _message_id_check(message_id)
    text = _edit_text_check(text)
    with transaction.atomic():
        message, editor = _readable_message(user, message_id, room_id)
        if message.author_id != editor.pk:
            raise PermissionDenied("only its author may edit a message")

        def apply(current: Message) -> tuple[str, dict[str, Any]] | None:
            if current.deleted_at is not None:
                raise Message.DoesNotExist(f"message {current.pk} was deleted")
            if current.text == text:
                return None
            current.text = text
            current.edited_at = timezone.now()
            current.save(update_fields=["text", "edited_at"])
            return "chat.message_edited", {
                "id": current.pk,
                "text": text,
                "edited_at": current.edited_at.isoformat(),
            }

        fresh, offset, changed = _change(message, apply)
    return MessageChanged(fresh, offset, changed)


def message_delete(
    *,
    user: AbstractBaseUser | AnonymousUser,
    message_id: object,
    room_id: int | None = None,
) -> MessageChanged:
    """Delete a message: a tombstone that keeps its offset (text emptied, ``deleted_at``
    set, reactions removed); publish ``chat.message_deleted {id, deleted_at}`` at the
    change's offset after commit. Allowed to its author, staff and the room's moderators.
    The text of the message's earlier ``chat.message_edited`` changes is emptied too, so
    that no replay shows it again. Deleting again changes nothing (``changed`` false).

    Raises:
        ValidationError: ``message_id`` not an int.
        PermissionDenied: anonymous user, or neither author, staff nor moderator.
        Message.DoesNotExist: no such message, or not readable by ``user``.
        DatabaseError: the database failed; nothing was written.
    """
    message_id = _message_id_check(message_id)
    with transaction.atomic():
        message, deleter = _readable_message(user, message_id, room_id)
        allowed = message.author_id == deleter.pk or room_can_moderate(
            user=deleter, room_id=message.room_id
        )
        if not allowed:
            raise PermissionDenied("only its author, staff or a moderator may delete a message")

        def apply(current: Message) -> tuple[str, dict[str, Any]] | None:
            if current.deleted_at is not None:
                return None
            current.text = ""
            current.deleted_at = timezone.now()
            current.save(update_fields=["text", "deleted_at"])
            Reaction.objects.filter(message=current).delete()
            edits = MessageChange.objects.filter(message=current, event="chat.message_edited")
            for edit in edits:
                edit.data = {**edit.data, "text": ""}
                edit.save(update_fields=["data"])
            return "chat.message_deleted", {
                "id": current.pk,
                "deleted_at": current.deleted_at.isoformat(),
            }

        fresh, offset, changed = _change(message, apply)
    return MessageChanged(fresh, offset, changed)


def message_react(
    *,
    user: AbstractBaseUser | AnonymousUser,
    message_id: object,
    emoji: object,
    on: object = None,
    room_id: int | None = None,
) -> MessageChanged:
    """Toggle the user's ``emoji`` on a message (``on`` None), or set it (``on`` True) or
    take it away (``on`` False: a retry changes nothing); publish ``chat.reactions {id,
    reactions}`` (the message's full reactions) at the change's offset after commit. Anyone
    who may read the room may react.

    Raises:
        ValidationError: ``message_id`` not an int; ``emoji`` fails ``emoji_check``; ``on``
            neither a boolean nor None; more than ``REACTIONS_PER_USER_MAX`` emojis of the
            user on the message.
        PermissionDenied: anonymous user.
        Message.DoesNotExist: no such message, deleted, or not readable by ``user``.
        DatabaseError: the database failed; nothing was written.
    """
    message_id = _message_id_check(message_id)
    emoji = emoji_check(emoji)
    if on is not None and type(on) is not bool:
        raise ValidationError("on must be a boolean")
    with transaction.atomic():
        message, reader = _readable_message(user, message_id, room_id)

        def apply(current: Message) -> tuple[str, dict[str, Any]] | None:
            if current.deleted_at is not None:
                raise Message.DoesNotExist(f"message {current.pk} was deleted")
            mine = Reaction.objects.filter(message=current, user=reader)
            existing = mine.filter(emoji=emoji).first()
            wanted = existing is None if on is None else on
            if wanted == (existing is not None):
                return None
            if existing is not None:
                existing.delete()
            elif mine.count() >= REACTIONS_PER_USER_MAX:
                raise ValidationError(
                    f"at most {REACTIONS_PER_USER_MAX} different reactions per message"
                )
            else:
                Reaction.objects.create(message=current, user=reader, emoji=emoji)
            return "chat.reactions", {"id": current.pk, "reactions": message_reactions(current)}

        fresh, offset, changed = _change(message, apply)
        reactions = message_reactions(fresh)
    return MessageChanged(fresh, offset, changed, reactions)
