"""Missed-message mail: a user away from every socket gets, per room and period, one mail
listing the messages they have not read (docs/operations.md, "Missed-message mail").

Who gets a mail about a room, at a run of the leader's job (``run_missed_mail``):

- a member of the room (joined public rooms, private rooms), active, with an email address,
  who has not turned the mail off (``MailPreference``; without a row it is on);
- with no open socket on any worker now (``realtime.worker_stats.users_connected``) and none
  seen by this leader for ``MISSED_MAIL_DELAY_SECONDS`` (default 15 min). The leader
  remembers whom it saw connected; a leader that just took over has seen nobody yet, so it
  mails no one before it has watched for one delay (never early, sometimes late);
- with unread messages (the read cursor decides, as the room list's ``unread``: after
  ``ReadCursor.offset``, not deleted, not their own) newer than what the last mail about the
  room listed (``MissedMessageMail.offset``): a message is mailed at most once;
- and no mail about the room within ``MISSED_MAIL_PERIOD_SECONDS`` (default 1 h).

The mail lists up to ``MISSED_MAIL_MAX_MESSAGES`` of those messages (author, time in UTC,
text), oldest first, and links to the room page at the first unread message
(``/chat/room/<id>/?at=<offset>``, absolute with ``SITE_URL``). It goes through Django's
email framework (``EMAIL_BACKEND``; the console by default).

At most one per period, even with two leaders overlapping (a lease is not a fence): each
mail is first claimed by a conditional write of its ``MissedMessageMail`` row (an UPDATE
that matches only a row older than the period, or an INSERT that the unique constraint
refuses to a second writer), committed, and only then sent, so no transaction is held open
while a mail server answers. A send that fails gives its claim back, and the next run
tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce, Greatest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from realtime.worker_stats import StatsUnavailable, users_connected

from .models import MailPreference, Message, MissedMessageMail, ReadCursor, Room

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MailSettings:
    """The ``MISSED_MAIL_*`` settings (defaults in parentheses).

    ``enabled`` (True): the leader runs the job at all. ``delay`` (900 s): how long a user
    must have had no socket. ``period`` (3,600 s): at most one mail per user, room and
    period. ``max_messages`` (10): messages listed in one mail. ``interval`` (60 s): how
    often the leader looks. ``batch`` (200): mails at most per run (the rest wait for the
    next). ``site_url`` (``SITE_URL``, ``http://localhost:8000``): the links' origin.
    """

    enabled: bool = True
    delay: float = 15 * 60.0
    period: float = 3600.0
    max_messages: int = 10
    interval: float = 60.0
    batch: int = 200
    site_url: str = "http://localhost:8000"


def mail_settings() -> MailSettings:
    """The settings as they are now (tests override them)."""
    return MailSettings(
        enabled=bool(getattr(settings, "MISSED_MAIL_ENABLED", True)),
        delay=float(getattr(settings, "MISSED_MAIL_DELAY_SECONDS", 15 * 60)),
        period=float(getattr(settings, "MISSED_MAIL_PERIOD_SECONDS", 3600)),
        max_messages=int(getattr(settings, "MISSED_MAIL_MAX_MESSAGES", 10)),
        interval=float(getattr(settings, "MISSED_MAIL_INTERVAL_SECONDS", 60)),
        batch=int(getattr(settings, "MISSED_MAIL_BATCH", 200)),
        site_url=str(getattr(settings, "SITE_URL", "http://localhost:8000")).rstrip("/"),
    )


# --- The preference ----------------------------------------------------------------------------


def mail_preference_get(*, user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether ``user`` gets missed-message mail (on without a row; off for anonymous)."""
    if not user.is_authenticated:
        return False
    found = (
        MailPreference.objects.filter(user_id=user.pk)
        .values_list("missed_messages", flat=True)
        .first()
    )
    return True if found is None else bool(found)


def mail_preference_set(
    *, user: AbstractBaseUser | AnonymousUser, missed_messages: bool
) -> MailPreference:
    """Turn the user's missed-message mail on or off (the settings page and the admin's
    path; one upsert).

    Raises:
        PermissionDenied: anonymous user.
    """
    if not user.is_authenticated:
        raise PermissionDenied("sign in to change your mail settings")
    preference, _ = MailPreference.objects.update_or_create(
        user_id=user.pk, defaults={"missed_messages": bool(missed_messages)}
    )
    return preference


# --- Who is due a mail -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Due:
    """A (user, room) that is due a mail: ``read`` (their cursor), ``after`` (the offset
    past which messages are new to them: the cursor or the last mail's, the larger)."""

    user_id: int
    room_id: int
    read: int
    after: int


def missed_mail_due(*, now: datetime, period: float) -> list[Due]:
    """Every membership due a mail by the database's part of the rules (active, an email
    address, not opted out, unread messages newer than the last mail, no mail within
    ``period`` seconds), by user and room. One query; whether the user is away is the
    caller's part."""
    mailed = MissedMessageMail.objects.filter(
        user_id=OuterRef("user_id"), room_id=OuterRef("room_id")
    )
    cursor = ReadCursor.objects.filter(user_id=OuterRef("user_id"), room_id=OuterRef("room_id"))
    unread_after = Message.objects.filter(
        room_id=OuterRef("room_id"), offset__gt=OuterRef("after"), deleted_at__isnull=True
    ).exclude(author_id=OuterRef("user_id"))
    rows = (
        Room.members.through.objects.filter(user__is_active=True)
        .exclude(user__email="")
        .exclude(user__chat_mail_preference__missed_messages=False)
        .annotate(
            read=Coalesce(Subquery(cursor.values("offset")[:1]), Value(0)),
            mailed_to=Coalesce(Subquery(mailed.values("offset")[:1]), Value(0)),
            last_sent=Subquery(mailed.values("sent_at")[:1]),
        )
        .filter(Q(last_sent__isnull=True) | Q(last_sent__lte=now - timedelta(seconds=period)))
        .annotate(after=Greatest(F("read"), F("mailed_to")))
        .filter(Exists(unread_after))
        .order_by("user_id", "room_id")
        # The plugin does not see annotations through the auto-created through model.
        .values_list("user_id", "room_id", "read", "after")  # type: ignore[misc]
    )
    return [Due(*row) for row in rows]


# --- Sending -----------------------------------------------------------------------------------


def _claim(due: Due, *, now: datetime, period: float, offset: int) -> MissedMessageMail | None:
    """Take the (user, room) mail slot for this period: the row as it was before (None if
    there was none), or raise ``_Taken`` when another run holds the period."""
    cutoff = now - timedelta(seconds=period)
    with transaction.atomic():
        before = MissedMessageMail.objects.filter(user_id=due.user_id, room_id=due.room_id).first()
        if before is None:
            try:
                with transaction.atomic():
                    MissedMessageMail.objects.create(
                        user_id=due.user_id, room_id=due.room_id, sent_at=now, offset=offset
                    )
            except IntegrityError as exc:  # another leader inserted it first
                raise _Taken from exc
            return None
        taken = MissedMessageMail.objects.filter(pk=before.pk, sent_at__lte=cutoff).update(
            sent_at=now, offset=offset
        )
        if not taken:
            raise _Taken
        return before


class _Taken(Exception):
    """Another run mailed this user about this room within the period."""


def _give_back(due: Due, *, now: datetime, before: MissedMessageMail | None) -> None:
    """Undo a claim after a failed send, if it is still this run's."""
    mine = MissedMessageMail.objects.filter(user_id=due.user_id, room_id=due.room_id, sent_at=now)
    if before is None:
        mine.delete()
    else:
        mine.update(sent_at=before.sent_at, offset=before.offset)


def _compose(due: Due, user: User, room: Room, config: MailSettings) -> tuple[EmailMessage, int]:
    """The mail for ``due`` and the newest offset it lists (2 queries)."""
    unread = (
        Message.objects.filter(room_id=room.pk, offset__gt=due.read, deleted_at__isnull=True)
        .exclude(author_id=user.pk)
        .select_related("author")
        .order_by("offset")
    )
    first_unread = unread.values_list("offset", flat=True).first() or due.after + 1
    new = list(unread.filter(offset__gt=due.after)[: config.max_messages + 1])
    listed, more = new[: config.max_messages], len(new) > config.max_messages
    link = f"{config.site_url}{reverse('chat:room', args=[room.pk])}?at={first_unread}"
    context = {
        "user": user,
        "room": room,
        "messages": listed,
        "more": more,
        "link": link,
        "settings_link": f"{config.site_url}{reverse('chat:mail-settings')}",
        "period_minutes": round(config.period / 60),
    }
    count = f"{len(listed)}{'+' if more else ''}"
    subject = f"{count} unread message{'s' if len(listed) != 1 or more else ''} in {room.name}"
    body = render_to_string("chat/missed_mail.txt", context)
    return EmailMessage(subject, body, to=[user.email]), listed[-1].offset


def missed_mail_send(*, exclude: Collection[int] = (), now: datetime | None = None) -> int:
    """Send the mails that are due, except to the users in ``exclude`` (those connected, or
    seen connected within the delay: the caller knows who is away), at most
    ``MISSED_MAIL_BATCH``; return how many went out.

    The one write path of missed-message mail (the leader's job, ``manage.py`` shells,
    tests). Each mail is claimed, committed and then sent (see the module docstring).
    """
    config = mail_settings()
    now = now or timezone.now()
    skip = set(exclude)
    due = [d for d in missed_mail_due(now=now, period=config.period) if d.user_id not in skip]
    due = due[: config.batch]
    if not due:
        return 0
    users = User.objects.in_bulk({d.user_id for d in due})
    rooms = Room.objects.in_bulk({d.room_id for d in due})
    sent = 0
    for item in due:
        user, room = users.get(item.user_id), rooms.get(item.room_id)
        if user is None or room is None:
            continue
        mail, offset = _compose(item, user, room, config)
        try:
            before = _claim(item, now=now, period=config.period, offset=offset)
        except _Taken:
            continue
        try:
            mail.send()
        except Exception:
            logger.exception("event=missed_mail.failed user=%s room=%s", item.user_id, item.room_id)
            _give_back(item, now=now, before=before)
            continue
        sent += 1
        logger.info(
            "event=missed_mail.sent user=%s room=%s offset=%s", item.user_id, item.room_id, offset
        )
    return sent


# --- The leader's job ----------------------------------------------------------------------------


class AwayTracker:
    """Who has been away from every socket for ``delay`` seconds, as one leader sees it.

    ``observe(connected, now)`` records the users connected now (times are
    ``time.monotonic()`` seconds); ``recently_seen()`` is everyone seen within the last
    ``delay``, whom no mail may reach; everyone else has been away for ``delay`` once
    ``watching_long_enough(now)``: this tracker has watched that long since it started (a
    new leader knows nobody's past). Memory stays proportional to the users seen within the
    last ``delay``.
    """

    def __init__(self, delay: float, started: float) -> None:
        self.delay = delay
        self.started = started
        self.seen: dict[int, float] = {}

    def observe(self, connected: set[int], now: float) -> None:
        for user_id in connected:
            self.seen[user_id] = now
        horizon = now - self.delay
        for user_id in [u for u, t in self.seen.items() if t < horizon]:
            del self.seen[user_id]

    def watching_long_enough(self, now: float) -> bool:
        return now - self.started >= self.delay

    def recently_seen(self) -> set[int]:
        return set(self.seen)


async def missed_mail_tick(tracker: AwayTracker, now: float | None = None) -> int | None:
    """One run of the job: read who is connected anywhere (one store read), remember them,
    and once ``tracker`` has watched for its delay, send the mails due to everyone else
    (``missed_mail_send``). Returns how many went out, or None when the run was skipped: the
    workers' store did not answer (nobody can be known to be away then) or the tracker has
    not watched long enough. ``now``: ``time.monotonic()`` by default (tests pass theirs)."""
    try:
        connected = await users_connected()
    except StatsUnavailable as exc:
        logger.warning("event=missed_mail.skipped reason=store error=%r", exc)
        return None
    now = time.monotonic() if now is None else now
    tracker.observe(connected, now)
    if not tracker.watching_long_enough(now):
        return None
    sent: int = await database_sync_to_async(missed_mail_send)(exclude=tracker.recently_seen())
    return sent


async def run_missed_mail() -> None:
    """Background service (leader only, ``chat.apps``): ``missed_mail_tick`` every
    ``MISSED_MAIL_INTERVAL_SECONDS``; nothing when ``MISSED_MAIL_ENABLED`` is off."""
    config = mail_settings()
    if not config.enabled:
        return
    tracker = AwayTracker(config.delay, time.monotonic())
    while True:
        await missed_mail_tick(tracker)
        await asyncio.sleep(config.interval)
