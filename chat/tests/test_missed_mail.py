"""Missed-message mail (``chat.missed_mail``): who gets one, what it says, how often, and the
leader's job that decides who is away."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core import mail
from django.test import Client
from django.utils import timezone

from chat import missed_mail, services
from chat.models import MailPreference, Message, MissedMessageMail, Room
from chat.tests.conftest import Demo
from realtime import background
from realtime.tests.conftest import communicator, session_cookie

SITE = "https://town.example"


@pytest.fixture(autouse=True)
def mail_config(settings: Any) -> None:
    settings.SITE_URL = SITE
    settings.MISSED_MAIL_PERIOD_SECONDS = 3600
    settings.MISSED_MAIL_MAX_MESSAGES = 2


@pytest.fixture
def people(demo: Demo) -> Demo:
    """alice (away, the reader) and carol are lobby members with addresses; bob writes."""
    for user in (demo.alice, demo.bob, demo.carol):
        user.email = f"{user.username}@example.org"
        user.save(update_fields=["email"])
    demo.lobby.members.add(demo.alice, demo.bob, demo.carol)
    return demo


def post(room: Room, author: Any, *texts: str) -> list[Message]:
    return [services.message_create(user=author, room_id=room.pk, text=t) for t in texts]


def mails_to(address: str) -> list[Any]:
    return [m for m in mail.outbox if m.to == [address]]


def link_in(body: str) -> str:
    found = re.search(rf"{re.escape(SITE)}/chat/room/\d+/\?at=\d+", body)
    assert found, body
    return found.group(0)


@pytest.mark.django_db
class TestWhoGetsMail:
    def test_one_mail_per_room_and_period_listing_what_was_missed(self, people: Demo) -> None:
        lobby = post(people.lobby, people.bob, "m-one", "m-two", "m-three")
        post(people.staff, people.bob, "secret")
        t0 = timezone.now()
        assert missed_mail.missed_mail_send(now=t0) == 3  # alice: lobby, staff; carol: lobby
        alice = mails_to("alice@example.org")
        assert sorted(m.subject for m in alice) == [
            "1 unread message in staff",
            "2+ unread messages in lobby",
        ]
        body = next(m.body for m in alice if "lobby" in m.subject)
        # Up to MISSED_MAIL_MAX_MESSAGES (2), oldest first, with author and time.
        assert "bob, " in body and "m-one" in body and "m-two" in body and "m-three" not in body
        assert f"{lobby[0].created_at:%Y-%m-%d %H:%M} UTC" in body
        assert link_in(body) == f"{SITE}/chat/room/{people.lobby.pk}/?at=1"
        assert f"{SITE}/settings/mail/" in body
        assert mails_to("bob@example.org") == []  # his own messages
        # Within the period: nothing more, even with news.
        post(people.lobby, people.bob, "m-four")
        assert missed_mail.missed_mail_send(now=t0 + timedelta(minutes=30)) == 0
        # The next period: only what the last mail did not list, linked at the first unread.
        mail.outbox.clear()
        assert missed_mail.missed_mail_send(now=t0 + timedelta(minutes=61)) == 2
        body = mails_to("alice@example.org")[0].body
        assert "m-three" in body and "m-four" in body and "m-one" not in body
        assert link_in(body) == f"{SITE}/chat/room/{people.lobby.pk}/?at=1"
        # Nothing new: no mail in the period after, though messages stay unread.
        assert missed_mail.missed_mail_send(now=t0 + timedelta(minutes=130)) == 0
        assert MissedMessageMail.objects.get(user=people.alice, room=people.lobby).offset == 4

    def test_the_link_points_at_the_first_unread_message(self, people: Demo) -> None:
        _, second, third = post(people.lobby, people.bob, "m-a", "m-b", "m-c")
        services.read_cursor_advance(user=people.alice, room_id=people.lobby.pk, offset=1)
        Message.objects.filter(pk=second.pk).update(text="", deleted_at=timezone.now())
        missed_mail.missed_mail_send()
        (sent,) = mails_to("alice@example.org")
        assert link_in(sent.body) == f"{SITE}/chat/room/{people.lobby.pk}/?at={third.offset}"
        assert "m-c" in sent.body and "m-b" not in sent.body and "m-a" not in sent.body
        assert sent.subject == "1 unread message in lobby"

    def test_none_after_reading_on_another_device(self, people: Demo) -> None:
        post(people.lobby, people.bob, "a", "b")
        services.read_cursor_advance(user=people.alice, room_id=people.lobby.pk, offset=2)
        missed_mail.missed_mail_send()
        assert mails_to("alice@example.org") == []
        assert len(mails_to("carol@example.org")) == 1

    def test_none_when_opted_out_without_address_inactive_or_not_a_member(
        self, people: Demo
    ) -> None:
        post(people.lobby, people.bob, "a")
        post(people.staff, people.bob, "s")
        missed_mail.mail_preference_set(user=people.alice, missed_messages=False)
        people.carol.email = ""
        people.carol.save(update_fields=["email"])
        people.dave.email = "dave@example.org"  # not a member of any room
        people.dave.save(update_fields=["email"])
        assert missed_mail.missed_mail_send() == 0
        assert mail.outbox == []
        missed_mail.mail_preference_set(user=people.alice, missed_messages=True)
        people.alice.is_active = False
        people.alice.save(update_fields=["is_active"])
        assert missed_mail.missed_mail_send() == 0

    def test_excluded_users_get_nothing(self, people: Demo) -> None:
        post(people.lobby, people.bob, "a")
        assert missed_mail.missed_mail_send(exclude={people.alice.pk}) == 1
        assert [m.to for m in mail.outbox] == [["carol@example.org"]]

    def test_a_failed_send_gives_the_claim_back(self, people: Demo, monkeypatch: Any) -> None:
        post(people.lobby, people.bob, "a")

        def refuse(self: Any, fail_silently: bool = False) -> int:
            raise ConnectionRefusedError("no mail server")

        monkeypatch.setattr("django.core.mail.EmailMessage.send", refuse)
        assert missed_mail.missed_mail_send() == 0
        assert not MissedMessageMail.objects.exists()
        monkeypatch.undo()
        assert missed_mail.missed_mail_send() == 2

    def test_a_period_claimed_elsewhere_is_not_mailed_again(self, people: Demo) -> None:
        # Another leader's run claimed the slot a minute ago (a lease is not a fence).
        post(people.lobby, people.bob, "a")
        MissedMessageMail.objects.create(
            user=people.alice, room=people.lobby, sent_at=timezone.now(), offset=0
        )
        assert missed_mail.missed_mail_send() == 1
        assert mails_to("alice@example.org") == []


@pytest.mark.django_db
class TestSettingsPage:
    def test_the_toggle_turns_mail_off_and_on(self, people: Demo) -> None:
        client = Client()
        client.force_login(people.alice)
        page = client.get("/settings/mail/")
        assert page.status_code == 200
        assert b'id="missed-messages" name="missed_messages" checked' in page.content
        assert client.post("/settings/mail/", {}).status_code == 302
        assert MailPreference.objects.get(user=people.alice).missed_messages is False
        assert b"checked" not in client.get("/settings/mail/").content
        client.post("/settings/mail/", {"missed_messages": "on"})
        assert missed_mail.mail_preference_get(user=people.alice) is True

    def test_anonymous_is_sent_to_sign_in(self, demo: Demo) -> None:
        response = Client().get("/settings/mail/")
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_the_job_runs_on_the_leader_only() -> None:
    service = background._services["missed-mail"]
    assert service.leader_only is True
    assert service.factory is missed_mail.run_missed_mail


@pytest.mark.django_db(transaction=True)
class TestTheJob:
    async def test_no_mail_while_a_socket_is_open_nor_within_the_delay(self, people: Demo) -> None:
        await database_sync_to_async(post)(people.lobby, people.bob, "a")
        tracker = missed_mail.AwayTracker(delay=900, started=0.0)
        # A new leader mails nobody before it has watched for the delay.
        assert await missed_mail.missed_mail_tick(tracker, now=10.0) is None
        cookie = await database_sync_to_async(session_cookie)(people.alice)
        socket = communicator("/ws/", cookie=cookie)
        connected, _ = await socket.connect()
        assert connected
        try:
            assert await missed_mail.missed_mail_tick(tracker, now=1000.0) == 1  # carol
            assert mails_to("alice@example.org") == []
        finally:
            await socket.disconnect()
        # Gone now, but seen 60 s ago: still within the delay.
        assert await missed_mail.missed_mail_tick(tracker, now=1060.0) == 0
        assert mails_to("alice@example.org") == []
        # Away for the whole delay: mailed.
        assert await missed_mail.missed_mail_tick(tracker, now=1901.0) == 1
        assert len(mails_to("alice@example.org")) == 1

    async def test_a_store_that_does_not_answer_skips_the_run(
        self, people: Demo, monkeypatch: Any
    ) -> None:
        await database_sync_to_async(post)(people.lobby, people.bob, "a")

        async def unavailable() -> set[int]:
            raise missed_mail.StatsUnavailable("redis down")

        monkeypatch.setattr(missed_mail, "users_connected", unavailable)
        tracker = missed_mail.AwayTracker(delay=0, started=0.0)
        assert await missed_mail.missed_mail_tick(tracker, now=5.0) is None
        assert mail.outbox == []
