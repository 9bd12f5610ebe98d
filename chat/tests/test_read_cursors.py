"""Read cursors and unread counts: ``services.read_cursor_advance``, ``POST
/api/rooms/<id>/read/``, the ``chat.read`` socket action, ``chat.unread`` on ``user:<id>``,
and the room list's ``unread``/``last_read``/``last_message``."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from chat import selectors, services
from chat.models import Message, ReadCursor, Room
from realtime.tests.conftest import communicator, receive, send, session_cookie
from realtime.tokens import issue_token

from .conftest import Demo


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(user)[0]}")
    return client


def post(room: Room, author: User, *texts: str) -> list[Message]:
    return [services.message_create(user=author, room_id=room.pk, text=t) for t in texts]


def tombstone(message: Message) -> None:
    # The state a delete leaves (docs/protocol.md): text emptied, deleted_at set.
    Message.objects.filter(pk=message.pk).update(text="", deleted_at=timezone.now())


def cursor(user: User, room: Room) -> int | None:
    return ReadCursor.objects.filter(user=user, room=room).values_list("offset", flat=True).first()


# --- the service -----------------------------------------------------------------------------


@pytest.mark.django_db
class TestService:
    def test_moves_forward_only(self, demo: Demo) -> None:
        post(demo.lobby, demo.bob, "1", "2", "3", "4")
        assert services.read_cursor_advance(user=demo.alice, room_id=demo.lobby.pk, offset=3) == (
            3,
            1,
        )
        # Lower and equal offsets change nothing and answer the current state.
        for offset in (0, 1, 3):
            assert services.read_cursor_advance(
                user=demo.alice, room_id=demo.lobby.pk, offset=offset
            ) == (3, 1)
        assert cursor(demo.alice, demo.lobby) == 3
        assert services.read_cursor_advance(user=demo.alice, room_id=demo.lobby.pk, offset=4) == (
            4,
            0,
        )
        assert ReadCursor.objects.filter(user=demo.alice).count() == 1

    def test_clamps_to_the_rooms_newest_offset(self, demo: Demo) -> None:
        post(demo.lobby, demo.bob, "1", "2")
        for huge in (3, 10**6, 2**63 - 1, 2**64, 10**40):
            assert services.read_cursor_advance(
                user=demo.alice, room_id=demo.lobby.pk, offset=huge
            ) == (2, 0)
        assert cursor(demo.alice, demo.lobby) == 2
        # A message after the clamp is unread: the cursor did not run ahead.
        post(demo.lobby, demo.bob, "3")
        assert selectors.read_state(user=demo.alice, room_id=demo.lobby.pk) == selectors.ReadState(
            last_read=2, unread=1, first_unread=3
        )

    def test_empty_room_writes_nothing(self, demo: Demo) -> None:
        assert services.read_cursor_advance(user=demo.alice, room_id=demo.lobby.pk, offset=5) == (
            0,
            0,
        )
        assert not ReadCursor.objects.exists()

    def test_counts_exclude_own_and_deleted_messages(self, demo: Demo) -> None:
        mine = post(demo.lobby, demo.alice, "mine 1")
        theirs = post(demo.lobby, demo.bob, "b1", "b2", "b3")
        post(demo.lobby, demo.alice, "mine 2")
        tombstone(theirs[0])
        state = selectors.read_state(user=demo.alice, room_id=demo.lobby.pk)
        # b2, b3: not alice's own, not deleted; the first unread is b2 (b1 is deleted).
        assert state == selectors.ReadState(last_read=0, unread=2, first_unread=theirs[1].offset)
        assert selectors.read_state(user=demo.bob, room_id=demo.lobby.pk).unread == 2
        assert services.read_cursor_advance(
            user=demo.alice, room_id=demo.lobby.pk, offset=mine[0].offset
        ) == (1, 2)

    def test_bad_offsets_are_refused_before_any_query(
        self, demo: Demo, django_assert_num_queries: Any
    ) -> None:
        for bad in (-1, True, False, "3", 3.0, None, [3], {"o": 1}):
            with django_assert_num_queries(0), pytest.raises(ValidationError):
                services.read_cursor_advance(user=demo.alice, room_id=demo.lobby.pk, offset=bad)

    def test_access(self, demo: Demo) -> None:
        with pytest.raises(PermissionDenied):
            services.read_cursor_advance(user=AnonymousUser(), room_id=demo.lobby.pk, offset=1)
        with pytest.raises(PermissionDenied):  # carol is not a member of the private room
            services.read_cursor_advance(user=demo.carol, room_id=demo.staff.pk, offset=1)
        for room_id in (0, -1, 2**63, 10**6):
            with pytest.raises(Room.DoesNotExist):
                services.read_cursor_advance(user=demo.alice, room_id=room_id, offset=1)
        post(demo.staff, demo.alice, "private")
        assert services.read_cursor_advance(user=demo.bob, room_id=demo.staff.pk, offset=1) == (
            1,
            0,
        )
        assert not ReadCursor.objects.filter(user=demo.carol).exists()

    def test_publishes_chat_unread_on_the_users_stream_only_when_it_moved(
        self, demo: Demo, django_capture_on_commit_callbacks: Any, monkeypatch: Any
    ) -> None:
        sent: list[tuple[Any, ...]] = []

        def publish(*args: Any, **kwargs: Any) -> bool:
            sent.append(args)
            return True

        monkeypatch.setattr("realtime.publish.publish", publish)
        post(demo.lobby, demo.bob, "1", "2", "3")
        with django_capture_on_commit_callbacks(execute=True):
            services.read_cursor_advance(user=demo.alice, room_id=demo.lobby.pk, offset=2)
        with django_capture_on_commit_callbacks(execute=True):
            services.read_cursor_advance(user=demo.alice, room_id=demo.lobby.pk, offset=1)
        assert [s for s in sent if s[0].startswith("user:")] == [
            (
                f"user:{demo.alice.pk}",
                "chat.unread",
                {"room": demo.lobby.pk, "unread": 1, "last_read": 2},
            )
        ]

    def test_sending_does_not_touch_cursors(self, demo: Demo) -> None:
        # The hot path stays per room: a send writes no cursor (own messages never count).
        post(demo.lobby, demo.alice, "hello")
        assert not ReadCursor.objects.exists()
        assert selectors.read_state(user=demo.alice, room_id=demo.lobby.pk).unread == 0


# --- HTTP ------------------------------------------------------------------------------------


@pytest.mark.django_db
class TestApi:
    def test_read_moves_the_cursor_and_answers_the_state(self, demo: Demo) -> None:
        post(demo.lobby, demo.bob, "1", "2", "3")
        api = client_for(demo.alice)
        url = f"/api/rooms/{demo.lobby.pk}/read/"
        response = api.post(url, {"offset": 2}, format="json")
        assert response.status_code == 200
        assert response.json() == {"room": demo.lobby.pk, "last_read": 2, "unread": 1}
        response = api.post(url, {"offset": 1}, format="json")
        assert response.json() == {"room": demo.lobby.pk, "last_read": 2, "unread": 1}
        response = api.post(url, {"offset": 10**30}, format="json")
        assert response.json() == {"room": demo.lobby.pk, "last_read": 3, "unread": 0}

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"offset": "2"},
            {"offset": -1},
            {"offset": True},
            {"offset": 2.5},
            {"offset": None},
            {"offset": [2]},
            [2],
        ],
    )
    def test_bad_bodies_get_400(self, demo: Demo, body: Any) -> None:
        post(demo.lobby, demo.bob, "1", "2")
        response = client_for(demo.alice).post(
            f"/api/rooms/{demo.lobby.pk}/read/", body, format="json"
        )
        assert response.status_code == 400, response.content
        assert cursor(demo.alice, demo.lobby) is None

    def test_unknown_and_private_rooms_get_the_same_404(self, demo: Demo) -> None:
        post(demo.staff, demo.alice, "secret")
        api = client_for(demo.carol)
        answers = [
            api.post(f"/api/rooms/{room_id}/read/", {"offset": 1}, format="json")
            for room_id in (demo.staff.pk, 10**6)
        ]
        assert [r.status_code for r in answers] == [404, 404]
        assert answers[0].json() == answers[1].json() == {"detail": "No such room."}
        assert api.post("/api/rooms/99999999999999999999/read/", {"offset": 1}).status_code == 404
        assert not ReadCursor.objects.exists()

    def test_anonymous_gets_401(self, demo: Demo) -> None:
        response = APIClient().post(f"/api/rooms/{demo.lobby.pk}/read/", {"offset": 1})
        assert response.status_code == 401

    def test_room_list_shows_read_state_and_last_message(self, demo: Demo) -> None:
        post(demo.lobby, demo.bob, "1", "2")
        last = post(demo.lobby, demo.carol, "3")[0]
        post(demo.staff, demo.bob, "s1")
        deleted = post(demo.staff, demo.bob, "s2")[0]
        tombstone(deleted)
        services.read_cursor_advance(user=demo.alice, room_id=demo.lobby.pk, offset=1)
        rooms = {r["name"]: r for r in client_for(demo.alice).get("/api/rooms/").json()}
        assert rooms["lobby"]["last_read"] == 1
        assert rooms["lobby"]["unread"] == 2
        assert rooms["lobby"]["last_message"] == {
            "id": last.pk,
            "offset": 3,
            "author": {"id": demo.carol.pk, "username": "carol"},
            "text": "3",
            "created_at": last.created_at.isoformat(),  # as chat.message shows it
            "deleted": False,
        }
        assert rooms["random"]["last_read"] == rooms["random"]["unread"] == 0
        assert rooms["random"]["last_message"] is None
        staff = rooms["staff"]
        assert staff["unread"] == 1  # s1; s2 is deleted
        assert staff["last_message"]["deleted"] is True
        assert staff["last_message"]["text"] == ""
        assert staff["last_message"]["id"] == deleted.pk
        # The same rooms for bob: his own messages are not unread for him.
        bobs = {r["name"]: r for r in client_for(demo.bob).get("/api/rooms/").json()}
        assert bobs["lobby"]["unread"] == 1
        assert bobs["staff"]["unread"] == 0

    def test_room_list_costs_the_same_queries_for_any_page_size(
        self, demo: Demo, django_assert_max_num_queries: Any
    ) -> None:
        for n in range(30):
            room = services.room_create(user=demo.alice, name=f"room-{n:02}")
            post(room, demo.bob, f"hello {n}")
            services.read_cursor_advance(user=demo.carol, room_id=room.pk, offset=n % 2)
        api = client_for(demo.carol)
        counts = []
        for size in (3, 32):  # 30 rooms, lobby and random (not the private staff)
            with CaptureQueriesContext(connection) as queries:
                response = api.get(f"/api/rooms/?page_size={size}")
            assert response.status_code == 200
            assert len(response.json()) == size
            counts.append(len(queries))
        assert counts[0] == counts[1]
        with django_assert_max_num_queries(3):  # the user (JWT), the rooms, their messages
            body = api.get("/api/rooms/?page_size=100").json()
        by_name = {r["name"]: r for r in body}
        assert [by_name[f"room-{n:02}"]["unread"] for n in range(4)] == [1, 0, 1, 0]
        assert by_name["room-07"]["last_message"]["text"] == "hello 7"


# --- the socket ------------------------------------------------------------------------------


async def signed_in(user: User) -> WebsocketCommunicator:
    comm = communicator("/ws/", cookie=await database_sync_to_async(session_cookie)(user))
    connected, _ = await comm.connect()
    assert connected
    return comm


async def read(comm: WebsocketCommunicator, ref: int, **fields: Any) -> dict[str, Any]:
    await send(comm, {"type": "chat.read", "ref": ref, **fields})
    return await receive(comm)


@pytest.mark.django_db(transaction=True)
class TestSocket:
    async def test_read_acks_and_other_devices_get_chat_unread(self, demo: Demo) -> None:
        await database_sync_to_async(post)(demo.lobby, demo.bob, "1", "2", "3")
        phone, laptop = await signed_in(demo.alice), await signed_in(demo.alice)
        try:
            await send(laptop, {"type": "subscribe", "stream": f"user:{demo.alice.pk}"})
            assert (await receive(laptop))["type"] == "ack"
            assert (await receive(laptop))["event"] == "notification.unread"  # snapshot
            ack = await read(phone, 7, room=demo.lobby.pk, offset=2)
            assert ack == {
                "type": "ack",
                "for": "chat.read",
                "ref": 7,
                "room": demo.lobby.pk,
                "last_read": 2,
                "unread": 1,
            }
            event = await receive(laptop)
            assert event["stream"] == f"user:{demo.alice.pk}"
            assert event["event"] == "chat.unread"
            assert event["data"] == {"room": demo.lobby.pk, "unread": 1, "last_read": 2}
            assert "offset" not in event  # ephemeral
            # Backwards: the current state, and no event.
            ack = await read(phone, 8, room=demo.lobby.pk, offset=1)
            assert (ack["last_read"], ack["unread"]) == (2, 1)
            ack = await read(phone, 9, room=demo.lobby.pk, offset=2**63 - 1)  # clamped
            assert (ack["last_read"], ack["unread"]) == (3, 0)
            event = await receive(laptop)  # the next event is the forward move's
            assert event["data"] == {"room": demo.lobby.pk, "unread": 0, "last_read": 3}
            assert await laptop.receive_nothing(0.1)
        finally:
            await phone.disconnect()
            await laptop.disconnect()

    async def test_bad_frames_and_unreadable_rooms(self, demo: Demo) -> None:
        await database_sync_to_async(post)(demo.staff, demo.alice, "secret")
        carol = await signed_in(demo.carol)
        try:
            cases: list[tuple[dict[str, Any], str]] = [
                ({"room": str(demo.lobby.pk), "offset": 1}, "invalid"),
                ({"room": True, "offset": 1}, "invalid"),
                ({"room": demo.lobby.pk}, "invalid"),
                ({"room": demo.lobby.pk, "offset": "1"}, "invalid"),
                ({"room": demo.lobby.pk, "offset": -1}, "invalid"),
                ({"room": demo.lobby.pk, "offset": False}, "invalid"),
                ({"room": demo.lobby.pk, "offset": 1.5}, "invalid"),
                ({"room": demo.staff.pk, "offset": 1}, "not_found"),
                ({"room": 10**6, "offset": 1}, "not_found"),
                # Beyond 64 bits the frame's JSON decoder gives a float: not an integer.
                ({"room": demo.lobby.pk, "offset": 10**20}, "invalid"),
                ({"room": 2**64, "offset": 1}, "invalid"),
                ({"room": 2**63, "offset": 1}, "not_found"),
                ({"room": -3, "offset": 1}, "not_found"),
            ]
            for ref, (fields, code) in enumerate(cases):
                answer = await read(carol, ref, **fields)
                assert (answer["type"], answer["code"], answer["ref"]) == ("error", code, ref)
            # The staff room's answer is the unknown room's, word for word.
            hidden = await read(carol, 50, room=demo.staff.pk, offset=1)
            unknown = await read(carol, 51, room=10**6, offset=1)
            assert hidden["detail"] == unknown["detail"]
        finally:
            await carol.disconnect()
        assert not await database_sync_to_async(ReadCursor.objects.exists)()
        anonymous = communicator("/ws/")
        connected, _ = await anonymous.connect()
        assert connected
        try:
            answer = await read(anonymous, 1, room=demo.lobby.pk, offset=1)
            assert answer["code"] == "unauthenticated"
        finally:
            await anonymous.disconnect()
