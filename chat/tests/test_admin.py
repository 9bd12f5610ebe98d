"""The chat admin writes through the services: offsets, events, revocation, deleted users."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import Client

from chat.models import DELETED_USERNAME, Message, Room
from chat.services import message_create
from realtime.tests.conftest import receive

from .conftest import Demo
from .test_presence import fresh_presence, join_room, next_event, next_event_or_code, socket_for

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["fresh_presence"]  # the presence store of test_presence, fresh for each test


@pytest.fixture
def admin_client(demo: Demo) -> Client:
    """A client signed in as alice (staff, superuser)."""
    client = Client()
    client.force_login(demo.alice)
    return client


def room_form(room: Room, members: list[User], **changes: Any) -> dict[str, Any]:
    return {"name": room.name, "members": [u.pk for u in members], **changes}


def test_a_message_added_in_the_admin_takes_the_next_offset_and_is_published(
    demo: Demo, admin_client: Client
) -> None:
    message_create(user=demo.bob, room_id=demo.lobby.pk, text="first")
    with mock.patch("realtime.publish.publish_many") as publish_many:
        response = admin_client.post(
            "/admin/chat/message/add/",
            {"room": demo.lobby.pk, "author": demo.carol.pk, "text": " from the admin "},
        )
    assert response.status_code == 302, response.content.decode()[-2000:]
    stored = Message.objects.get(room=demo.lobby, offset=2)
    assert (stored.author, stored.text) == (demo.carol, "from the admin")
    assert Room.objects.get(pk=demo.lobby.pk).last_offset == 2
    publish_many.assert_called_once()
    (event,) = publish_many.call_args.args[0]
    assert (event.stream, event.event, event.offset) == (demo.lobby.stream, "chat.message", 2)
    assert event.data["author"] == {"id": demo.carol.pk, "username": "carol"}
    assert event.data["text"] == "from the admin"


def test_a_message_without_an_author_is_the_operators(demo: Demo, admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/chat/message/add/", {"room": demo.random.pk, "author": "", "text": "hello"}
    )
    assert response.status_code == 302
    assert list(Message.objects.values_list("room", "offset", "author__username")) == [
        (demo.random.pk, 1, "alice")
    ]


@pytest.mark.parametrize(
    ("author", "text", "error"),
    [
        ("carol", "hi", "carol is not a member of this private room."),
        ("bob", "   ", "This field is required."),
        (DELETED_USERNAME, "hi", "Nobody writes as the [deleted] account."),
    ],
)
def test_a_refused_message_is_a_form_error_and_stores_nothing(
    demo: Demo, admin_client: Client, author: str, text: str, error: str
) -> None:
    from chat.models import deleted_user

    deleted_user()
    with mock.patch("realtime.publish.publish_many") as publish_many:
        response = admin_client.post(
            "/admin/chat/message/add/",
            {"room": demo.staff.pk, "author": User.objects.get(username=author).pk, "text": text},
        )
    # The form again, with the service's refusal on it, not a 500.
    assert response.status_code == 200
    assert error in response.content.decode()
    assert Message.objects.count() == 0
    assert Room.objects.get(pk=demo.staff.pk).last_offset == 0
    publish_many.assert_not_called()


def test_messages_are_read_only(demo: Demo, admin_client: Client) -> None:
    message = message_create(user=demo.bob, room_id=demo.lobby.pk, text="keep me")
    url = f"/admin/chat/message/{message.pk}/change/"
    view = admin_client.get(url)
    assert view.status_code == 200
    assert 'name="text"' not in view.content.decode()  # shown, not editable
    assert "keep me" in view.content.decode()
    assert admin_client.post(url, {"text": "changed"}).status_code == 403
    delete = admin_client.post(f"/admin/chat/message/{message.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    action = admin_client.post(
        "/admin/chat/message/",
        {"action": "delete_selected", "_selected_action": [message.pk], "post": "yes"},
    )
    # No such action (the tombstone action is the only one): back to the list, nothing done.
    assert action.status_code == 302
    assert "delete_selected" not in admin_client.get("/admin/chat/message/").content.decode()
    assert Message.objects.get(pk=message.pk).text == "keep me"


def test_member_changes_publish_joined_and_left(demo: Demo, admin_client: Client) -> None:
    # staff's members are alice and bob: replace bob with carol.
    with mock.patch("realtime.publish.publish_many") as publish_many:
        response = admin_client.post(
            f"/admin/chat/room/{demo.staff.pk}/change/",
            room_form(demo.staff, [demo.alice, demo.carol]),
        )
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert set(demo.staff.members.values_list("username", flat=True)) == {"alice", "carol"}
    events = [(e.stream, e.event, e.data) for e in publish_many.call_args.args[0]]
    assert events == [
        (
            demo.staff.stream,
            "chat.member_joined",
            {"user": {"id": demo.carol.pk, "username": "carol"}},
        ),
        (demo.staff.stream, "chat.member_left", {"user": {"id": demo.bob.pk, "username": "bob"}}),
    ]


def test_saving_a_room_keeps_offsets_written_meanwhile_and_privacy(
    demo: Demo, admin_client: Client
) -> None:
    page = admin_client.get(f"/admin/chat/room/{demo.lobby.pk}/change/")
    assert page.status_code == 200
    assert 'name="is_private"' not in page.content.decode()  # read-only once created
    message_create(user=demo.bob, room_id=demo.lobby.pk, text="sent while the page was open")
    response = admin_client.post(
        f"/admin/chat/room/{demo.lobby.pk}/change/",
        room_form(demo.lobby, [], name="hall", is_private="on"),
    )
    assert response.status_code == 302
    room = Room.objects.get(pk=demo.lobby.pk)
    assert (room.name, room.is_private, room.last_offset) == ("hall", False, 1)
    message_create(user=demo.bob, room_id=demo.lobby.pk, text="next")
    assert list(room.messages.values_list("offset", flat=True)) == [1, 2]


def test_a_room_added_in_the_admin_follows_the_name_rule(demo: Demo, admin_client: Client) -> None:
    bad = admin_client.post("/admin/chat/room/add/", {"name": "two words", "members": []})
    assert bad.status_code == 200
    assert "letters, digits" in bad.content.decode()
    taken = admin_client.post("/admin/chat/room/add/", {"name": "LOBBY", "members": []})
    assert taken.status_code == 200
    assert "exists" in taken.content.decode()
    with mock.patch("realtime.publish.publish_many") as publish_many:
        made = admin_client.post(
            "/admin/chat/room/add/",
            {"name": "ops", "is_private": "on", "members": [demo.alice.pk, demo.dave.pk]},
        )
    assert made.status_code == 302, made.content.decode()[-2000:]
    room = Room.objects.get(name="ops")
    assert (room.is_private, room.created_by) == (True, demo.alice)
    assert set(room.members.values_list("username", flat=True)) == {"alice", "dave"}
    events = [(e.event, e.data["user"]["username"]) for e in publish_many.call_args.args[0]]
    assert events == [("chat.member_joined", "alice"), ("chat.member_joined", "dave")]


def test_deleted_account_is_not_offered_as_a_member(demo: Demo, admin_client: Client) -> None:
    from chat.models import deleted_user

    deleted_user()
    page = admin_client.get(f"/admin/chat/room/{demo.lobby.pk}/change/").content.decode()
    assert ">carol</option>" in page
    assert DELETED_USERNAME not in page


async def test_removing_a_member_in_the_admin_revokes_and_publishes_member_left(
    demo: Demo,
) -> None:
    stream = demo.staff.stream
    alice, bob = await socket_for(demo.alice), await socket_for(demo.bob)
    await join_room(alice, stream)
    await join_room(bob, stream)

    def remove_bob() -> int:
        client = Client()
        client.force_login(demo.alice)
        response = client.post(
            f"/admin/chat/room/{demo.staff.pk}/change/", room_form(demo.staff, [demo.alice])
        )
        return response.status_code

    assert await database_sync_to_async(remove_bob)() == 302
    error = await next_event_or_code(bob, "unsubscribed")
    assert (error["stream"], error["detail"]) == (
        stream,
        "you are no longer a member of this private room",
    )
    left = await next_event(alice, "chat.member_left")
    assert left["data"] == {"user": {"id": demo.bob.pk, "username": "bob"}}
    assert await bob.receive_nothing(timeout=0.1)
    await bob.send_json_to({"type": "subscribe", "stream": stream})
    assert (await receive(bob))["code"] == "forbidden"
    for comm in (alice, bob):
        await comm.disconnect()


def test_deleting_a_user_keeps_their_messages_gapless_under_deleted(
    demo: Demo, admin_client: Client
) -> None:
    for author, text in [(demo.bob, "one"), (demo.carol, "two"), (demo.bob, "three")]:
        message_create(user=author, room_id=demo.lobby.pk, text=text)
    message_create(user=demo.bob, room_id=demo.staff.pk, text="private")
    with (
        mock.patch("realtime.publish.publish_many") as publish_many,
        mock.patch("chat.receivers.revoke") as revoke,
    ):
        response = admin_client.post(f"/admin/auth/user/{demo.bob.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(username="bob").exists()
    rows = list(
        Message.objects.filter(room=demo.lobby).values_list("offset", "author__username", "text")
    )
    assert rows == [
        (1, DELETED_USERNAME, "one"),
        (2, "carol", "two"),
        (3, DELETED_USERNAME, "three"),
    ]
    assert Message.objects.get(room=demo.staff).author.username == DELETED_USERNAME
    # bob left the private room the way a removal does: chat.member_left (and revocation).
    events = [(e.stream, e.event, e.data) for e in publish_many.call_args.args[0]]
    assert events == [
        (demo.staff.stream, "chat.member_left", {"user": {"id": demo.bob.pk, "username": "bob"}})
    ]
    revoke.assert_called_once_with(
        demo.staff.stream, demo.bob.pk, "you are no longer a member of this private room"
    )
    # The API and the page show the placeholder.
    carol = Client()
    carol.force_login(demo.carol)
    api = carol.get(f"/api/rooms/{demo.lobby.pk}/messages/")
    assert api.status_code == 200
    body = api.json()
    items = body["results"] if isinstance(body, dict) else body
    assert sorted((m["offset"], m["author"]["username"]) for m in items) == [
        (1, DELETED_USERNAME),
        (2, "carol"),
        (3, DELETED_USERNAME),
    ]
    page = carol.get(f"/chat/room/{demo.lobby.pk}/")
    assert page.status_code == 200
    assert page.content.decode().count('<span class="author">[deleted]</span>') == 2
    # The next message takes the next offset.
    assert message_create(user=demo.carol, room_id=demo.lobby.pk, text="four").offset == 4


def test_the_deleted_account_cannot_sign_in_nor_be_changed_or_deleted(
    demo: Demo, admin_client: Client
) -> None:
    message_create(user=demo.dave, room_id=demo.lobby.pk, text="bye")
    admin_client.post(f"/admin/auth/user/{demo.dave.pk}/delete/", {"post": "yes"})
    deleted = User.objects.get(username=DELETED_USERNAME)
    assert (deleted.is_active, deleted.has_usable_password()) == (False, False)
    visitor = Client()
    login = visitor.post("/accounts/login/", {"username": DELETED_USERNAME, "password": ""})
    assert login.status_code == 200  # the form again, not a redirect
    assert "_auth_user_id" not in visitor.session
    token = Client().post(
        "/api/token/",
        {"username": DELETED_USERNAME, "password": "x"},
        content_type="application/json",
    )
    assert token.status_code in (400, 401, 403)
    change = admin_client.post(
        f"/admin/auth/user/{deleted.pk}/change/", {"username": DELETED_USERNAME, "is_active": "on"}
    )
    assert change.status_code == 403
    password = admin_client.post(
        f"/admin/auth/user/{deleted.pk}/password/",
        {"password1": "a-Long-new-pass-99", "password2": "a-Long-new-pass-99"},
    )
    assert password.status_code == 403
    delete = admin_client.post(f"/admin/auth/user/{deleted.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    bulk = admin_client.post(
        "/admin/auth/user/",
        {"action": "delete_selected", "_selected_action": [deleted.pk], "post": "yes"},
    )
    assert bulk.status_code == 403
    deleted.refresh_from_db()
    assert (deleted.is_active, deleted.has_usable_password()) == (False, False)
    assert Message.objects.get().author == deleted


def test_deleting_a_private_room_ends_its_members_subscriptions(
    demo: Demo, admin_client: Client
) -> None:
    message_create(user=demo.bob, room_id=demo.staff.pk, text="private")
    with mock.patch("chat.receivers.revoke") as revoke:
        response = admin_client.post(f"/admin/chat/room/{demo.staff.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Room.objects.filter(pk=demo.staff.pk).exists()
    assert not Message.objects.exists()
    revoked = sorted(call.args[:2] for call in revoke.call_args_list)
    assert revoked == [(demo.staff.stream, demo.alice.pk), (demo.staff.stream, demo.bob.pk)]


def test_member_services_are_staff_only_and_idempotent(demo: Demo) -> None:
    from django.core.exceptions import PermissionDenied

    from chat import services

    with pytest.raises(PermissionDenied):
        services.room_members_change(room_id=demo.staff.pk, add=[demo.carol.pk], by=demo.bob)
    assert not demo.staff.members.filter(pk=demo.carol.pk).exists()
    with mock.patch("realtime.publish.publish_many") as publish_many:
        assert services.room_members_change(
            room_id=demo.staff.pk, add=[demo.carol.pk, demo.alice.pk], by=demo.alice
        ) == ([demo.carol.pk], [])
        assert services.room_members_change(
            room_id=demo.staff.pk, add=[demo.carol.pk], by=demo.alice
        ) == ([], [])
        assert services.room_member_remove(room_id=demo.staff.pk, user=demo.carol, by=None)
        assert not services.room_member_remove(room_id=demo.staff.pk, user=demo.carol, by=None)
    events = [
        [(e.event, e.data["user"]["username"]) for e in call.args[0]]
        for call in publish_many.call_args_list
    ]
    assert events == [[("chat.member_joined", "carol")], [("chat.member_left", "carol")]]


def test_moderators_chosen_in_the_admin_may_delete_others_messages(
    demo: Demo, admin_client: Client
) -> None:
    from django.core.exceptions import PermissionDenied

    from chat.services import message_delete

    response = admin_client.post(
        f"/admin/chat/room/{demo.lobby.pk}/change/",
        room_form(demo.lobby, [], moderators=[demo.carol.pk]),
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert list(demo.lobby.moderators.values_list("username", flat=True)) == ["carol"]
    page = admin_client.get(f"/admin/chat/room/{demo.lobby.pk}/change/").content.decode()
    assert 'name="moderators"' in page
    assert DELETED_USERNAME not in page
    bobs = message_create(user=demo.bob, room_id=demo.lobby.pk, text="off topic")
    with pytest.raises(PermissionDenied):
        message_delete(user=demo.dave, message_id=bobs.pk)
    message_delete(user=demo.carol, message_id=bobs.pk)
    bobs.refresh_from_db()
    assert (bobs.text, bobs.deleted_at is not None) == ("", True)


def test_a_rooms_creator_is_its_first_moderator(demo: Demo) -> None:
    from chat.services import room_create

    room = room_create(user=demo.bob, name="bobs-corner")
    assert list(room.moderators.values_list("username", flat=True)) == ["bob"]
