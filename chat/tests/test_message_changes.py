"""Edits, deletes and reactions: the services, replay merged with messages, the HTTP API.

Each change takes the room's next offset like a message (``services._take_offsets``), so
offsets stay gapless over messages and changes together; a deleted message's text appears
nowhere afterwards (history, replay, the edits replayed before the delete).
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import close_old_connections
from rest_framework.test import APIClient

from chat import services, streams
from chat.models import Message, MessageChange, Reaction, Room
from realtime.registry import Event
from realtime.tokens import issue_token

from .conftest import Demo

pytestmark = pytest.mark.django_db

SECRET = "my password is hunter2"


def say(user: User, room: Room, text: str) -> Message:
    return services.message_create(user=user, room_id=room.pk, text=text)


def offsets(room: Room) -> list[int]:
    """Every offset the room's messages and changes hold, ascending."""
    taken = list(Message.objects.filter(room=room).values_list("offset", flat=True))
    taken += list(MessageChange.objects.filter(room=room).values_list("offset", flat=True))
    return sorted(taken)


def assert_gapless(room: Room) -> None:
    room.refresh_from_db()
    assert offsets(room) == list(range(1, room.last_offset + 1))


def api(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(user)[0]}")
    return client


# --- services ------------------------------------------------------------------------------


def test_an_edit_takes_the_next_offset_and_publishes_after_commit(
    demo: Demo, django_capture_on_commit_callbacks: Any
) -> None:
    first = say(demo.bob, demo.lobby, "helo")
    say(demo.carol, demo.lobby, "hi")
    with (
        mock.patch("realtime.publish.publish") as publish,
        django_capture_on_commit_callbacks(execute=True),
    ):
        result = services.message_edit(user=demo.bob, message_id=first.pk, text="  hello  ")
        publish.assert_not_called()
    assert (result.offset, result.changed, result.message.text) == (3, True, "hello")
    first.refresh_from_db()
    assert first.text == "hello" and first.edited_at is not None
    data = {"id": first.pk, "text": "hello", "edited_at": first.edited_at.isoformat()}
    publish.assert_called_once_with(
        f"chat:room:{demo.lobby.pk}", "chat.message_edited", data, offset=3
    )
    change = MessageChange.objects.get()
    assert (change.offset, change.event, change.data, change.message_id) == (
        3,
        "chat.message_edited",
        data,
        first.pk,
    )
    assert_gapless(demo.lobby)


def test_the_same_text_changes_nothing_and_names_the_latest_offset(
    demo: Demo, django_capture_on_commit_callbacks: Any
) -> None:
    message = say(demo.bob, demo.lobby, "one")
    services.message_edit(user=demo.bob, message_id=message.pk, text="two")  # offset 2
    say(demo.carol, demo.lobby, "later")  # offset 3
    with (
        mock.patch("realtime.publish.publish") as publish,
        django_capture_on_commit_callbacks(execute=True),
    ):
        again = services.message_edit(user=demo.bob, message_id=message.pk, text=" two ")
    assert (again.changed, again.offset) == (False, 2)
    publish.assert_not_called()
    assert MessageChange.objects.count() == 1
    demo.lobby.refresh_from_db()
    assert demo.lobby.last_offset == 3  # the offset it took was given back
    assert say(demo.carol, demo.lobby, "next").offset == 4
    assert_gapless(demo.lobby)


@pytest.mark.parametrize(
    ("who", "allowed"),
    [("bob", True), ("alice", True), ("moderator", True), ("dave", False)],
)
def test_who_may_delete(demo: Demo, who: str, allowed: bool) -> None:
    """Author (bob), staff (alice), a moderator of the room (carol); not another user."""
    demo.lobby.moderators.add(demo.carol)
    user = {"bob": demo.bob, "alice": demo.alice, "moderator": demo.carol, "dave": demo.dave}[who]
    message = say(demo.bob, demo.lobby, SECRET)
    if allowed:
        result = services.message_delete(user=user, message_id=message.pk)
        assert (result.changed, result.offset, result.message.text) == (True, 2, "")
        assert result.message.deleted_at is not None
    else:
        with pytest.raises(PermissionDenied):
            services.message_delete(user=user, message_id=message.pk)
        message.refresh_from_db()
        assert (message.text, message.deleted_at) == (SECRET, None)
        assert MessageChange.objects.count() == 0
    assert_gapless(demo.lobby)


def test_a_moderator_of_another_room_may_not_delete(demo: Demo) -> None:
    demo.random.moderators.add(demo.carol)
    message = say(demo.bob, demo.lobby, "x")
    with pytest.raises(PermissionDenied):
        services.message_delete(user=demo.carol, message_id=message.pk)


@pytest.mark.parametrize("who", ["alice", "carol"])
def test_only_the_author_may_edit(demo: Demo, who: str) -> None:
    """Not staff (alice), not a moderator (carol)."""
    demo.lobby.moderators.add(demo.carol)
    message = say(demo.bob, demo.lobby, "mine")
    with pytest.raises(PermissionDenied):
        services.message_edit(user=getattr(demo, who), message_id=message.pk, text="not yours")
    message.refresh_from_db()
    assert (message.text, message.edited_at) == ("mine", None)
    assert_gapless(demo.lobby)


def test_a_private_rooms_messages_are_not_found_for_non_members(demo: Demo) -> None:
    message = say(demo.bob, demo.staff, "members only")
    for call in (
        lambda: services.message_edit(user=demo.carol, message_id=message.pk, text="x"),
        lambda: services.message_delete(user=demo.carol, message_id=message.pk),
        lambda: services.message_react(user=demo.carol, message_id=message.pk, emoji="👍"),
    ):
        with pytest.raises(Message.DoesNotExist):
            call()
    # Removed from the room, the author cannot edit or delete either.
    demo.staff.members.remove(demo.bob)
    with pytest.raises(Message.DoesNotExist):
        services.message_edit(user=demo.bob, message_id=message.pk, text="x")
    assert MessageChange.objects.count() == 0
    assert_gapless(demo.staff)


def test_anonymous_users_change_nothing(demo: Demo) -> None:
    message = say(demo.bob, demo.lobby, "x")
    anonymous = AnonymousUser()
    with pytest.raises(PermissionDenied):
        services.message_edit(user=anonymous, message_id=message.pk, text="y")
    with pytest.raises(PermissionDenied):
        services.message_delete(user=anonymous, message_id=message.pk)
    with pytest.raises(PermissionDenied):
        services.message_react(user=anonymous, message_id=message.pk, emoji="👍")
    assert MessageChange.objects.count() == 0


def test_a_message_of_another_room_is_not_found(demo: Demo) -> None:
    message = say(demo.bob, demo.lobby, "x")
    with pytest.raises(Message.DoesNotExist):
        services.message_edit(
            user=demo.bob, message_id=message.pk, text="y", room_id=demo.random.pk
        )


def test_a_deleted_message_is_a_tombstone_and_its_text_is_gone_everywhere(
    demo: Demo,
) -> None:
    message = say(demo.bob, demo.lobby, "draft")
    services.message_edit(user=demo.bob, message_id=message.pk, text=SECRET)  # 2
    services.message_react(user=demo.carol, message_id=message.pk, emoji="😮")  # 3
    deleted = services.message_delete(user=demo.bob, message_id=message.pk)  # 4
    assert (deleted.offset, deleted.changed) == (4, True)
    assert Reaction.objects.count() == 0
    with pytest.raises(Message.DoesNotExist):
        services.message_edit(user=demo.bob, message_id=message.pk, text="back")
    with pytest.raises(Message.DoesNotExist):
        services.message_react(user=demo.carol, message_id=message.pk, emoji="👍")
    again = services.message_delete(user=demo.alice, message_id=message.pk)
    assert (again.changed, again.offset) == (False, 4)
    # Nowhere: history, the replayed events (the edit's included), the API.
    replayed = streams.replay_room(str(demo.lobby.pk), 0, 100)
    assert [e.event for e in replayed] == [
        "chat.message",
        "chat.message_edited",
        "chat.reactions",
        "chat.message_deleted",
    ]
    assert replayed[0].data["text"] == "" and replayed[0].data["deleted"] is True
    assert replayed[0].data["reactions"] == {}
    assert replayed[1].data["text"] == ""
    history = api(demo.carol).get(f"/api/rooms/{demo.lobby.pk}/messages/").json()["results"]
    assert history[0]["text"] == "" and history[0]["deleted"] is True
    everything = json.dumps([e.data for e in replayed]) + json.dumps(history)
    assert SECRET not in everything and "draft" not in everything
    assert "hunter2" not in json.dumps(list(MessageChange.objects.values_list("data", flat=True)))
    assert_gapless(demo.lobby)


def test_reactions_toggle_set_and_keep_the_order_of_first_reaction(demo: Demo) -> None:
    message = say(demo.bob, demo.lobby, "nice")

    def react(user: User, emoji: str, on: object = None) -> services.MessageChanged:
        return services.message_react(user=user, message_id=message.pk, emoji=emoji, on=on)

    assert react(demo.dave, "👍").reactions == {"👍": [demo.dave.pk]}
    assert react(demo.carol, "🎉").reactions == {"👍": [demo.dave.pk], "🎉": [demo.carol.pk]}
    both = react(demo.bob, "👍")
    assert both.reactions == {"👍": [demo.dave.pk, demo.bob.pk], "🎉": [demo.carol.pk]}
    assert (both.offset, both.changed) == (4, True)
    # Toggle off, then on again: bob now reacted last.
    assert react(demo.bob, "👍").reactions == {"👍": [demo.dave.pk], "🎉": [demo.carol.pk]}
    assert react(demo.bob, "👍").reactions == {
        "👍": [demo.dave.pk, demo.bob.pk],
        "🎉": [demo.carol.pk],
    }
    # on=True is retry-safe: set already, so nothing changes and no offset is taken.
    retry = react(demo.bob, "👍", on=True)
    assert (retry.changed, retry.offset) == (False, 6)
    assert react(demo.bob, "👍", on=False).changed is True
    assert react(demo.bob, "👍", on=False).changed is False
    # The last of an emoji gone: its key is gone.
    assert react(demo.carol, "🎉", on=False).reactions == {"👍": [demo.dave.pk]}
    # Emoji sequences with zero-width joiners and variation selectors are one reaction.
    family = "👨\u200d👩\u200d👧"
    assert react(demo.carol, family).reactions == {"👍": [demo.dave.pk], family: [demo.carol.pk]}
    events = list(MessageChange.objects.order_by("offset").values_list("offset", "event"))
    assert [e for _, e in events] == ["chat.reactions"] * 8
    assert [o for o, _ in events] == list(range(2, 10))
    assert MessageChange.objects.order_by("offset").last().data == {  # type: ignore[union-attr]
        "id": message.pk,
        "reactions": {"👍": [demo.dave.pk], family: [demo.carol.pk]},
    }
    assert_gapless(demo.lobby)


def test_one_user_has_at_most_twenty_emojis_on_a_message(demo: Demo) -> None:
    message = say(demo.bob, demo.lobby, "x")
    for n in range(services.REACTIONS_PER_USER_MAX):
        services.message_react(user=demo.carol, message_id=message.pk, emoji=f"e{n}")
    with pytest.raises(ValidationError):
        services.message_react(user=demo.carol, message_id=message.pk, emoji="one more")
    with pytest.raises(ValidationError):
        services.message_react(user=demo.carol, message_id=message.pk, emoji="onemore")
    # Taking one away is always allowed; another user has their own twenty.
    services.message_react(user=demo.carol, message_id=message.pk, emoji="e0")
    services.message_react(user=demo.dave, message_id=message.pk, emoji="e0")
    assert Reaction.objects.filter(user=demo.carol).count() == services.REACTIONS_PER_USER_MAX - 1
    assert_gapless(demo.lobby)


BAD_IDS: list[tuple[object, type[Exception]]] = [
    ("1", ValidationError),
    (True, ValidationError),
    (None, ValidationError),
    (1.0, ValidationError),
    ([1], ValidationError),
    (0, Message.DoesNotExist),
    (-1, Message.DoesNotExist),
    (2**63, Message.DoesNotExist),
    (10**30, Message.DoesNotExist),
    (987654, Message.DoesNotExist),
]


@pytest.mark.parametrize(("message_id", "error"), BAD_IDS)
def test_bad_message_ids(demo: Demo, message_id: object, error: type[Exception]) -> None:
    say(demo.bob, demo.lobby, "x")
    for call in (
        lambda: services.message_edit(user=demo.bob, message_id=message_id, text="y"),
        lambda: services.message_delete(user=demo.bob, message_id=message_id),
        lambda: services.message_react(user=demo.bob, message_id=message_id, emoji="👍"),
    ):
        with pytest.raises(error):
            call()
    assert MessageChange.objects.count() == 0
    assert_gapless(demo.lobby)


@pytest.mark.parametrize(
    "text", ["", "   ", "\n\t", 5, None, True, ["x"], {"t": 1}, "x" * 4001, "a\x00b", "\ud800"]
)
def test_bad_texts(demo: Demo, text: object) -> None:
    message = say(demo.bob, demo.lobby, "x")
    with pytest.raises(ValidationError):
        services.message_edit(user=demo.bob, message_id=message.pk, text=text)
    message.refresh_from_db()
    assert (message.text, message.edited_at) == ("x", None)


def test_the_longest_text_is_accepted(demo: Demo) -> None:
    message = say(demo.bob, demo.lobby, "x")
    result = services.message_edit(user=demo.bob, message_id=message.pk, text="y" * 4000)
    assert result.changed and len(result.message.text) == 4000


@pytest.mark.parametrize(
    "emoji",
    ["", " ", "a b", "👍 ", "\n", "\x07", "x" * 33, "\ud83d", 5, None, ["👍"], "\u2028"],
)
def test_bad_emojis(demo: Demo, emoji: object) -> None:
    message = say(demo.bob, demo.lobby, "x")
    with pytest.raises(ValidationError):
        services.message_react(user=demo.carol, message_id=message.pk, emoji=emoji)
    assert Reaction.objects.count() == 0


@pytest.mark.parametrize("on", ["yes", 1, 0, "true", [], {}])
def test_on_must_be_a_boolean(demo: Demo, on: object) -> None:
    message = say(demo.bob, demo.lobby, "x")
    with pytest.raises(ValidationError):
        services.message_react(user=demo.carol, message_id=message.pk, emoji="👍", on=on)
    assert Reaction.objects.count() == 0


def test_history_lists_reactions_without_a_query_per_message(
    demo: Demo, django_assert_num_queries: Any
) -> None:
    messages = [say(demo.bob, demo.lobby, f"m{n}") for n in range(12)]
    for message in messages:
        services.message_react(user=demo.carol, message_id=message.pk, emoji="👍")
        services.message_react(user=demo.dave, message_id=message.pk, emoji="🎉")
    client = api(demo.carol)
    url = f"/api/rooms/{demo.lobby.pk}/messages/"
    client.get(url)  # warm: the token's user, sessions
    with django_assert_num_queries(4):  # user, room, messages, their reactions
        body = client.get(url).json()
    assert len(body["results"]) == 12
    assert all(
        m["reactions"] == {"👍": [demo.carol.pk], "🎉": [demo.dave.pk]} for m in body["results"]
    )
    with django_assert_num_queries(3):  # messages, their reactions, changes
        events = streams.replay_room(str(demo.lobby.pk), 0, 500)
    assert len(events) == 12 * 3


# --- replay ----------------------------------------------------------------------------------


def apply(state: dict[int, dict[str, Any]], event: Event) -> None:
    """A client's view of a room, built from events (as a client applies them)."""
    data = event.data
    if event.event == "chat.message":
        state[data["id"]] = {
            "text": data["text"],
            "edited_at": data["edited_at"],
            "deleted": data["deleted"],
            "reactions": data["reactions"],
        }
    elif event.event == "chat.message_edited":
        state[data["id"]].update(text=data["text"], edited_at=data["edited_at"])
    elif event.event == "chat.message_deleted":
        state[data["id"]].update(text="", deleted=True, reactions={})
    elif event.event == "chat.reactions":
        state[data["id"]]["reactions"] = data["reactions"]
    else:
        raise AssertionError(event.event)


def history_state(user: User, room: Room) -> dict[int, dict[str, Any]]:
    body = api(user).get(f"/api/rooms/{room.pk}/messages/").json()
    return {
        m["id"]: {
            "text": m["text"],
            "edited_at": m["edited_at"] and datetime.fromisoformat(m["edited_at"]),
            "deleted": m["deleted"],
            "reactions": m["reactions"],
        }
        for m in body["results"]
    }


def parsed(state: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {
        k: {**v, "edited_at": v["edited_at"] and datetime.fromisoformat(v["edited_at"])}
        for k, v in state.items()
    }


def test_replay_merges_messages_and_changes_by_offset(demo: Demo) -> None:
    a = say(demo.bob, demo.lobby, "a")  # 1
    b = say(demo.carol, demo.lobby, "b")  # 2
    services.message_react(user=demo.dave, message_id=a.pk, emoji="👍")  # 3
    services.message_edit(user=demo.carol, message_id=b.pk, text="b2")  # 4
    c = say(demo.dave, demo.lobby, "c")  # 5
    services.message_delete(user=demo.bob, message_id=a.pk)  # 6
    services.message_edit(user=demo.carol, message_id=b.pk, text="b3")  # 7
    services.message_react(user=demo.bob, message_id=c.pk, emoji="🎉")  # 8
    key = str(demo.lobby.pk)
    events = streams.replay_room(key, 0, 100)
    assert [(e.offset, e.event) for e in events] == [
        (1, "chat.message"),
        (2, "chat.message"),
        (3, "chat.reactions"),
        (4, "chat.message_edited"),
        (5, "chat.message"),
        (6, "chat.message_deleted"),
        (7, "chat.message_edited"),
        (8, "chat.reactions"),
    ]
    # A chat.message shows the current state, the changes as they were published.
    assert events[1].data["text"] == "b3" and events[3].data["text"] == "b2"
    # since and limit count the merged events.
    assert [e.offset for e in streams.replay_room(key, 2, 3)] == [3, 4, 5]
    assert [e.offset for e in streams.replay_room(key, 5, 100)] == [6, 7, 8]
    assert [e.offset for e in streams.replay_room(key, 0, 1)] == [1]
    assert streams.replay_room(key, 8, 100) == []
    # A client applying the replay from any point on reaches the history's state.
    history = history_state(demo.carol, demo.lobby)
    for since in range(0, 9):
        state: dict[int, dict[str, Any]] = {}
        for event in streams.replay_room(key, 0, since):  # what the client saw before
            apply(state, event)
        for event in streams.replay_room(key, since, 100):
            apply(state, event)
        assert parsed(state) == history, since
    assert history[a.pk] == {"text": "", "edited_at": None, "deleted": True, "reactions": {}}
    assert history[b.pk]["text"] == "b3" and history[b.pk]["edited_at"] is not None
    assert history[c.pk]["reactions"] == {"🎉": [demo.bob.pk]}


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_and_changes_keep_offsets_gapless_on_sqlite(demo: Demo) -> None:
    """Senders and editors/reactors at once: every offset of the room is used once."""
    targets = [say(demo.bob, demo.lobby, f"t{n}") for n in range(4)]
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def sender(n: int) -> None:
        start.wait()
        try:
            for i in range(10):
                say(demo.carol, demo.lobby, f"s{n}-{i}")
        except BaseException as exc:  # collected; the test fails on it below
            failures.append(exc)
        finally:
            close_old_connections()

    def changer(n: int) -> None:
        start.wait()
        target = targets[n].pk
        try:
            for i in range(10):
                if i % 2:
                    services.message_edit(user=demo.bob, message_id=target, text=f"e{n}-{i}")
                else:
                    services.message_react(user=demo.dave, message_id=target, emoji="👍")
        except BaseException as exc:
            failures.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=changer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert Message.objects.filter(room=demo.lobby).count() == 4 + 40
    assert MessageChange.objects.filter(room=demo.lobby).count() == 40
    assert_gapless(demo.lobby)
    assert demo.lobby.last_offset == 84
    # Each target's changes are in the order its thread made them.
    for n, target in enumerate(targets):
        events = list(
            MessageChange.objects.filter(message=target)
            .order_by("offset")
            .values_list("event", flat=True)
        )
        assert events == ["chat.reactions", "chat.message_edited"] * 5, n


# --- HTTP API --------------------------------------------------------------------------------


def url(room: Room, message: Message | int, tail: str = "") -> str:
    mid = message if isinstance(message, int) else message.pk
    return f"/api/rooms/{room.pk}/messages/{mid}/{tail}"


def test_api_patch_edits_and_answers_the_message(demo: Demo) -> None:
    message = say(demo.bob, demo.lobby, "x")
    response = api(demo.bob).patch(url(demo.lobby, message), {"text": " y "}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["text"], body["deleted"], body["reactions"]) == (
        message.pk,
        "y",
        False,
        {},
    )
    assert body["edited_at"] is not None
    assert MessageChange.objects.get().event == "chat.message_edited"


def test_api_delete_is_204_and_history_shows_the_tombstone(demo: Demo) -> None:
    message = say(demo.bob, demo.lobby, SECRET)
    services.message_react(user=demo.carol, message_id=message.pk, emoji="👍")
    client = api(demo.bob)
    assert client.delete(url(demo.lobby, message)).status_code == 204
    assert client.delete(url(demo.lobby, message)).status_code == 204  # again: nothing new
    assert MessageChange.objects.filter(event="chat.message_deleted").count() == 1
    (listed,) = client.get(f"/api/rooms/{demo.lobby.pk}/messages/").json()["results"]
    assert (listed["text"], listed["deleted"], listed["reactions"]) == ("", True, {})
    assert client.patch(url(demo.lobby, message), {"text": "z"}, format="json").status_code == 404


def test_api_reactions(demo: Demo) -> None:
    message = say(demo.bob, demo.lobby, "x")
    client = api(demo.carol)
    target = url(demo.lobby, message, "reactions/")
    first = client.post(target, {"emoji": "👍"}, format="json")
    assert (first.status_code, first.json()) == (
        200,
        {"id": message.pk, "reactions": {"👍": [demo.carol.pk]}},
    )
    assert client.post(target, {"emoji": "👍", "on": True}, format="json").json()["reactions"] == {
        "👍": [demo.carol.pk]
    }
    off = client.post(target, {"emoji": "👍", "on": None}, format="json")  # null: toggle
    assert off.json() == {"id": message.pk, "reactions": {}}
    assert MessageChange.objects.count() == 2


def test_api_retried_toggle_with_an_idempotency_key_toggles_once(demo: Demo) -> None:
    message = say(demo.bob, demo.lobby, "x")
    client = api(demo.carol)
    target = url(demo.lobby, message, "reactions/")
    answers = [
        client.post(target, {"emoji": "👍"}, format="json", headers={"Idempotency-Key": "r-1"})
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert (
        answers[0].json()
        == answers[1].json()
        == {
            "id": message.pk,
            "reactions": {"👍": [demo.carol.pk]},
        }
    )
    assert answers[1].headers["Idempotent-Replayed"] == "true"
    assert Reaction.objects.count() == 1 and MessageChange.objects.count() == 1


@pytest.mark.parametrize(
    ("method", "who", "tail", "body", "status"),
    [
        ("patch", "dave", "", {"text": "y"}, 403),  # not the author
        ("patch", "alice", "", {"text": "y"}, 403),  # staff edit nobody's words
        ("delete", "dave", "", None, 403),
        ("delete", "alice", "", None, 204),  # staff
        ("patch", "bob", "", {"text": 5}, 400),
        ("patch", "bob", "", {"text": ""}, 400),
        ("patch", "bob", "", {"text": "   "}, 400),
        ("patch", "bob", "", {"text": "x" * 4001}, 400),
        ("patch", "bob", "", {"text": "a\x00b"}, 400),
        ("patch", "bob", "", {}, 400),
        ("patch", "bob", "", ["text"], 400),
        ("post", "dave", "reactions/", {"emoji": "a b"}, 400),
        ("post", "dave", "reactions/", {"emoji": ""}, 400),
        ("post", "dave", "reactions/", {"emoji": "x" * 33}, 400),
        ("post", "dave", "reactions/", {"emoji": 5}, 400),
        ("post", "dave", "reactions/", {"emoji": "👍", "on": "yes"}, 400),
        ("post", "dave", "reactions/", {"emoji": "👍", "on": 1}, 400),
        ("post", "dave", "reactions/", {}, 400),
    ],
)
def test_api_refusals(
    demo: Demo, method: str, who: str, tail: str, body: object, status: int
) -> None:
    message = say(demo.bob, demo.lobby, "x")
    client = api(getattr(demo, who))
    response = getattr(client, method)(url(demo.lobby, message, tail), body, format="json")
    assert response.status_code == status, response.content
    if status >= 400:
        assert MessageChange.objects.count() == 0
        message.refresh_from_db()
        assert (message.text, message.deleted_at) == ("x", None)


@pytest.mark.parametrize(
    ("method", "tail", "body"),
    [("patch", "", {"text": "y"}), ("delete", "", None), ("post", "reactions/", {"emoji": "👍"})],
)
def test_api_not_found_is_one_answer(demo: Demo, method: str, tail: str, body: object) -> None:
    """Unknown message, another room's, a private room's for a non-member: the same 404."""
    private = say(demo.bob, demo.staff, "members only")
    lobby = say(demo.bob, demo.lobby, "x")
    carol, bob = api(demo.carol), api(demo.bob)
    answers = [
        getattr(carol, method)(url(demo.staff, private, tail), body, format="json"),
        getattr(bob, method)(url(demo.lobby, 987654, tail), body, format="json"),
        getattr(bob, method)(url(demo.random, lobby, tail), body, format="json"),
        getattr(bob, method)(f"/api/rooms/1/messages/{2**63}/{tail}", body, format="json"),
    ]
    assert [a.status_code for a in answers] == [404] * 4
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert answers[0].json()["detail"] == "No such message."
    assert MessageChange.objects.count() == 0


def test_api_anonymous_is_refused(demo: Demo) -> None:
    message = say(demo.bob, demo.lobby, "x")
    client = APIClient()
    assert client.patch(url(demo.lobby, message), {"text": "y"}, format="json").status_code in (
        401,
        403,
    )
    assert client.delete(url(demo.lobby, message)).status_code in (401, 403)
    assert client.post(url(demo.lobby, message, "reactions/"), {"emoji": "👍"}).status_code in (
        401,
        403,
    )
    assert MessageChange.objects.count() == 0


# --- admin -----------------------------------------------------------------------------------


def test_the_admin_deletes_through_message_delete_and_never_edits(
    demo: Demo, django_capture_on_commit_callbacks: Any
) -> None:
    from django.test import Client

    kept = say(demo.bob, demo.lobby, "kept")
    gone = say(demo.bob, demo.lobby, SECRET)
    client = Client()
    client.force_login(demo.alice)  # staff
    with (
        mock.patch("realtime.publish.publish") as publish,
        django_capture_on_commit_callbacks(execute=True),
    ):
        answer = client.post(
            "/admin/chat/message/",
            {"action": "tombstone_selected", "_selected_action": [gone.pk]},
        )
    assert answer.status_code == 302
    gone.refresh_from_db()
    assert (gone.text, gone.deleted_at is not None, gone.offset) == ("", True, 2)
    ((args, kwargs),) = publish.call_args_list
    assert args[1] == "chat.message_deleted" and kwargs == {"offset": 3}
    assert Message.objects.filter(room=demo.lobby).count() == 2  # the row stays
    # Text is never edited here (the author's, through message_edit).
    change = client.post(f"/admin/chat/message/{kept.pk}/change/", {"text": "changed"})
    assert change.status_code == 403
    kept.refresh_from_db()
    assert (kept.text, kept.edited_at) == ("kept", None)
    assert_gapless(demo.lobby)


# --- PostgreSQL, a real server -----------------------------------------------------------------


@pytest.mark.server
def test_concurrent_sends_and_changes_keep_offsets_gapless_on_postgres(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """HTTP sends, edits and reactions at once against a server on PostgreSQL (row locks,
    READ COMMITTED): every offset of the room is used once, each message's changes in the
    order its client made them."""
    import httpx
    import psycopg

    from tests.conftest import token_for
    from tests.pg import scratch_postgres
    from tests.server import run_server

    workdir = tmp_path_factory.mktemp("changes-pg")
    with (
        scratch_postgres() as database_url,
        run_server(workdir, DATABASE_URL=database_url) as server,
    ):
        auth = {
            name: {"Authorization": f"Bearer {token_for(server, name)}"}
            for name in ("bob", "carol", "dave")
        }
        rooms = httpx.get(f"{server.http}/api/rooms/", headers=auth["bob"]).json()
        lobby = next(r["id"] for r in rooms if r["name"] == "lobby")
        base = f"{server.http}/api/rooms/{lobby}/messages/"
        targets = [
            httpx.post(base, json={"text": f"t{n}"}, headers=auth["bob"]).json()["id"]
            for n in range(4)
        ]
        start = threading.Barrier(8)
        statuses: list[int] = []

        def sender(n: int) -> None:
            with httpx.Client(headers=auth["carol"], timeout=30) as client:
                start.wait()
                statuses.extend(
                    client.post(base, json={"text": f"s{n}-{i}"}).status_code for i in range(8)
                )

        def changer(n: int) -> None:
            with httpx.Client(timeout=30) as client:
                start.wait()
                for i in range(8):
                    if i % 2:
                        answer = client.patch(
                            f"{base}{targets[n]}/", json={"text": f"e{n}-{i}"}, headers=auth["bob"]
                        )
                    else:
                        answer = client.post(
                            f"{base}{targets[n]}/reactions/",
                            json={"emoji": "👍"},
                            headers=auth["dave"],
                        )
                    statuses.append(answer.status_code)

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
        threads += [threading.Thread(target=changer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200] * 32 + [201] * 32
        with psycopg.connect(database_url) as db:
            (last,) = db.execute(
                "SELECT last_offset FROM chat_room WHERE id = %s", [lobby]
            ).fetchone()  # type: ignore[misc]
            used = [
                row[0]
                for row in db.execute(
                    'SELECT "offset" FROM chat_message WHERE room_id = %(r)s UNION ALL'
                    ' SELECT "offset" FROM chat_messagechange WHERE room_id = %(r)s ORDER BY 1',
                    {"r": lobby},
                )
            ]
            assert last == 4 + 32 + 32
            assert used == list(range(1, last + 1))
            for target in targets:
                events = [
                    row[0]
                    for row in db.execute(
                        "SELECT event FROM chat_messagechange WHERE message_id = %s"
                        ' ORDER BY "offset"',
                        [target],
                    )
                ]
                assert events == ["chat.reactions", "chat.message_edited"] * 4, target
