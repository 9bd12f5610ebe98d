"""Chat services: validation, permissions, gapless offsets, publish after commit."""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, transaction

from chat import services
from chat.models import Message, Room

from .conftest import Demo

pytestmark = pytest.mark.django_db(transaction=True)


def test_offsets_run_1_2_3_per_room(demo: Demo) -> None:
    for text in ("a", "b", "c"):
        services.message_create(user=demo.alice, room_id=demo.lobby.pk, text=text)
    services.message_create(user=demo.bob, room_id=demo.random.pk, text="elsewhere")
    lobby = list(Message.objects.filter(room=demo.lobby).values_list("offset", "text"))
    assert lobby == [(1, "a"), (2, "b"), (3, "c")]
    assert Message.objects.get(room=demo.random).offset == 1
    assert Room.objects.get(pk=demo.lobby.pk).last_offset == 3


def test_a_rolled_back_message_leaves_no_gap(demo: Demo) -> None:
    services.message_create(user=demo.alice, room_id=demo.lobby.pk, text="kept")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.message_create(user=demo.alice, room_id=demo.lobby.pk, text="rolled back")
        raise RuntimeError
    services.message_create(user=demo.alice, room_id=demo.lobby.pk, text="next")
    assert list(Message.objects.values_list("offset", "text")) == [(1, "kept"), (2, "next")]


def test_publish_happens_after_commit_with_the_offset(demo: Demo) -> None:
    with mock.patch("realtime.publish.publish_many") as publish_many:
        with transaction.atomic():
            message = services.message_create(
                user=demo.bob, room_id=demo.lobby.pk, text=" hi ", client_id="c-1"
            )
            publish_many.assert_not_called()
        publish_many.assert_called_once()
    (event,) = publish_many.call_args.args[0]
    assert (event.stream, event.event, event.offset) == (
        f"chat:room:{demo.lobby.pk}",
        "chat.message",
        1,
    )
    assert event.data == {
        "id": message.pk,
        "room": demo.lobby.pk,
        "offset": 1,
        "author": {"id": demo.bob.pk, "username": "bob"},
        "text": "hi",
        "client_id": "c-1",
        "created_at": message.created_at.isoformat(),
        "edited_at": None,
        "deleted": False,
        "reactions": {},
    }


def test_nothing_is_published_when_the_transaction_rolls_back(demo: Demo) -> None:
    with mock.patch("realtime.publish.publish_many") as publish_many:
        with pytest.raises(RuntimeError), transaction.atomic():
            services.message_create(user=demo.bob, room_id=demo.lobby.pk, text="x")
            raise RuntimeError
        publish_many.assert_not_called()


def test_a_batch_is_stored_in_order_with_gapless_offsets_and_one_publish(demo: Demo) -> None:
    def new(user: User, room: Room, text: str) -> services.NewMessage:
        return services.message_check(user=user, room_id=room.pk, text=text)

    services.message_create(user=demo.alice, room_id=demo.lobby.pk, text="before")
    batch = [
        new(demo.alice, demo.lobby, "l1"),
        new(demo.bob, demo.random, "r1"),
        new(demo.carol, demo.staff, "not a member"),  # refused, takes no offset
        new(demo.bob, demo.lobby, "l2"),
        new(demo.bob, demo.staff, "s1"),  # a member: stored
        new(demo.alice, demo.lobby, "l3"),
    ]
    batch.append(services.NewMessage(demo.alice, 99999, "nowhere", ""))
    with mock.patch("realtime.publish.publish_many") as publish_many:
        results = services.message_create_many(batch)
    assert isinstance(results[2], PermissionDenied)
    assert isinstance(results[6], Room.DoesNotExist)
    stored = [r for r in results if isinstance(r, Message)]
    assert [(m.text, m.offset) for m in stored] == [
        ("l1", 2),
        ("r1", 1),
        ("l2", 3),
        ("s1", 1),
        ("l3", 4),
    ]
    assert all(m.pk is not None for m in stored)
    assert list(
        Message.objects.filter(room=demo.lobby).order_by("offset").values_list("offset", "text")
    ) == [(1, "before"), (2, "l1"), (3, "l2"), (4, "l3")]
    rooms = dict(Room.objects.values_list("pk", "last_offset"))
    assert (rooms[demo.lobby.pk], rooms[demo.random.pk], rooms[demo.staff.pk]) == (4, 1, 1)
    publish_many.assert_called_once()
    events = publish_many.call_args.args[0]
    # Grouped by room, each room's in offset order.
    published = [(e.stream, e.offset, e.data["text"]) for e in events]
    assert sorted(published) == sorted((f"chat:room:{m.room_id}", m.offset, m.text) for m in stored)
    for room in {m.room_id for m in stored}:
        offsets = [o for stream, o, _ in published if stream == f"chat:room:{room}"]
        assert offsets == sorted(offsets)


def test_a_batch_that_fails_in_the_database_stores_nothing(demo: Demo) -> None:
    batch = [
        services.message_check(user=demo.alice, room_id=demo.lobby.pk, text=f"m{i}")
        for i in range(3)
    ]
    with (
        mock.patch.object(Message.objects, "bulk_create", side_effect=DatabaseError("disk")),
        pytest.raises(DatabaseError),
    ):
        services.message_create_many(batch)
    assert Message.objects.count() == 0
    assert Room.objects.get(pk=demo.lobby.pk).last_offset == 0


@pytest.mark.parametrize(
    ("text", "client_id"),
    [
        ("", ""),
        ("   ", ""),
        (None, ""),
        (5, ""),
        (["x"], ""),
        ("x" * 4001, ""),
        ("ok", 7),
        ("ok", "c" * 65),
    ],
)
def test_bad_text_or_client_id_is_refused_and_nothing_stored(
    demo: Demo, text: object, client_id: object
) -> None:
    with pytest.raises(ValidationError):
        services.message_create(
            user=demo.alice, room_id=demo.lobby.pk, text=text, client_id=client_id
        )
    assert Message.objects.count() == 0
    assert Room.objects.get(pk=demo.lobby.pk).last_offset == 0


def test_4000_characters_is_the_longest_message(demo: Demo) -> None:
    message = services.message_create(user=demo.alice, room_id=demo.lobby.pk, text="é" * 4000)
    assert len(message.text) == 4000


def test_non_members_cannot_write_to_a_private_room(demo: Demo) -> None:
    with pytest.raises(PermissionDenied):
        services.message_create(user=demo.carol, room_id=demo.staff.pk, text="let me in")
    assert Message.objects.count() == 0
    services.message_create(user=demo.bob, room_id=demo.staff.pk, text="members only")
    assert Message.objects.get().author == demo.bob


def test_unknown_room(demo: Demo) -> None:
    with pytest.raises(Room.DoesNotExist):
        services.message_create(user=demo.alice, room_id=99999, text="x")


def test_join_and_leave_public_rooms_publish_membership(demo: Demo) -> None:
    with mock.patch("realtime.publish.publish") as publish:
        services.room_join(user=demo.carol, room_id=demo.lobby.pk)
        services.room_join(user=demo.carol, room_id=demo.lobby.pk)  # already a member
        services.room_leave(user=demo.carol, room_id=demo.lobby.pk)
        services.room_leave(user=demo.carol, room_id=demo.lobby.pk)  # not a member
    events = [c.args[1] for c in publish.call_args_list]
    assert events == ["chat.member_joined", "chat.member_left"]
    assert publish.call_args_list[0].args[2] == {"user": {"id": demo.carol.pk, "username": "carol"}}
    assert not demo.lobby.members.filter(pk=demo.carol.pk).exists()


def test_private_rooms_cannot_be_joined(demo: Demo) -> None:
    with pytest.raises(PermissionDenied):
        services.room_join(user=demo.carol, room_id=demo.staff.pk)
    assert not demo.staff.members.filter(pk=demo.carol.pk).exists()


def test_demo_is_idempotent(demo: Demo) -> None:
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert sorted(User.objects.values_list("username", flat=True)) == [
        "alice",
        "bob",
        "carol",
        "dave",
    ]
    assert sorted(Room.objects.values_list("name", "is_private")) == [
        ("lobby", False),
        ("random", False),
        ("staff", True),
    ]
    assert sorted(demo.staff.members.values_list("username", flat=True)) == ["alice", "bob"]
    alice = User.objects.get(username="alice")
    assert alice.is_staff and alice.check_password("townsquare-demo")
    assert not User.objects.get(username="carol").is_staff
