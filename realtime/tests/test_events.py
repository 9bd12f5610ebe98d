"""Declared events (``realtime.events``): publish refuses what is not declared when validation
is on, and passes it untouched when off."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import msgspec
import pytest
from django.db import transaction

from realtime import events, registry
from realtime.events import InvalidEvent, Payload, UserRef
from realtime.publish import (
    Published,
    apublish,
    apublish_many,
    publish,
    publish_many,
    publish_on_commit,
)


class Said(Payload):
    text: str
    author: UserRef
    mood: str | msgspec.UnsetType = msgspec.UNSET


GOOD = {"text": "hi", "author": {"id": 1, "username": "alice"}}


@pytest.fixture(autouse=True)
def said() -> Iterator[None]:
    """``test:open`` carries ``test.said`` (ephemeral), ``test:log`` ``test.said`` (durable)."""
    with events.override():
        events.declare("test:open", "test.said", Said)
        events.declare("test:log", "test.said", Said, durable=True)
        yield


def refused(stream: str, event: str, data: Any, offset: int | None = None) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        events.check(stream, event, data, offset)
    return caught.value


def test_validation_is_on_in_tests_and_follows_the_setting(settings: Any) -> None:
    assert events.enabled is True  # the root conftest's autouse fixture
    settings.TOWNSQUARE_VALIDATE_EVENTS = False
    assert events.enabled is False
    settings.DEBUG = True
    assert events.enabled is True


def test_a_declared_event_passes_and_a_missing_optional_field_is_fine() -> None:
    events.check("test:open:x", "test.said", GOOD)
    events.check("test:open:x", "test.said", {**GOOD, "mood": "glad"})
    events.check("test:log", "test.said", GOOD, 3)


def test_undeclared_events_and_kinds_are_refused_by_name() -> None:
    error = refused("test:open:x", "test.shouted", GOOD)
    assert (error.stream, error.kind, error.event, error.field) == (
        "test:open:x",
        "test:open",
        "test.shouted",
        None,
    )
    assert "'test:open'" in str(error) and "'test.shouted'" in str(error)
    assert refused("nowhere:1", "test.said", GOOD).kind is None


@pytest.mark.parametrize(
    ("data", "field", "detail"),
    [
        ({**GOOD, "author": {"id": "1", "username": "a"}}, "author.id", "Expected `int`"),
        ({**GOOD, "author": {"id": True, "username": "a"}}, "author.id", "got `bool`"),
        ({"author": GOOD["author"]}, "text", "missing required field"),
        ({**GOOD, "extra": 1}, "extra", "unknown field"),
        ({**GOOD, "mood": None}, "mood", "Expected `str`"),
        ([GOOD], None, "Expected `object`"),
    ],
)
def test_a_wrong_shape_is_refused_naming_the_field(
    data: Any, field: str | None, detail: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = refused("test:open:x", "test.said", data)
    assert error.field == field
    assert detail in error.detail
    if field:
        assert f"field {field!r}" in str(error)
    assert "event=invalid_event stream=test:open:x kind=test:open name=test.said" in caplog.text


def test_offsets_follow_the_declaration() -> None:
    assert "without offset" in refused("test:log", "test.said", GOOD).detail
    assert "offset on an event" in refused("test:open:x", "test.said", GOOD, 4).detail


def test_presence_events_are_carried_by_presence_kinds_only() -> None:
    user = {"user": {"id": 1, "username": "alice"}}
    with registry.override():
        registry.register_stream("test:seen", authorize=lambda user, key: None, presence=True)
        events.check("test:seen:1", "presence.join", user)
        events.check("test:seen:1", "presence.state", {"users": [user["user"]]})
        assert refused("test:seen:1", "presence.join", {"user": 1}).field == "user"
    assert refused("test:open:x", "presence.join", user).detail.startswith("event not declared")


async def test_apublish_and_apublish_many_refuse_when_on_and_pass_untouched_when_off(
    settings: Any,
) -> None:
    with pytest.raises(InvalidEvent):
        await apublish("test:open:x", "test.shouted", {})
    bad = [Published("test:open:x", "test.said", GOOD), Published("test:open:x", "test.said", {})]
    with pytest.raises(InvalidEvent) as caught:
        await apublish_many(iter(bad))
    assert caught.value.field == "text"
    settings.TOWNSQUARE_VALIDATE_EVENTS = False
    with mock.patch("realtime.events.check") as check:
        assert await apublish("test:open:x", "test.shouted", {"any": 1}) is True
        assert await apublish_many(iter(bad)) == 2
    check.assert_not_called()


def test_publish_and_publish_many_raise_in_the_callers_thread(settings: Any) -> None:
    with pytest.raises(InvalidEvent):
        publish("test:open:x", "test.said", {"text": 1})
    with pytest.raises(InvalidEvent):
        publish_many([Published("test:log", "test.said", GOOD)])  # durable, no offset
    settings.TOWNSQUARE_VALIDATE_EVENTS = False
    # Off: the same undeclared event goes out (the in-memory layer takes it).
    assert publish("test:open:x", "test.shouted", {}) is True


@pytest.mark.django_db
def test_publish_on_commit_checks_at_once_and_publishes_after_commit(
    django_capture_on_commit_callbacks: Any,
) -> None:
    with mock.patch("realtime.publish.publish") as sent:
        with pytest.raises(InvalidEvent), transaction.atomic():
            publish_on_commit("test:open:x", "test.said", {"text": "no author"})
        with (
            django_capture_on_commit_callbacks(execute=True) as callbacks,
            transaction.atomic(),
        ):
            publish_on_commit("test:log:1", "test.said", GOOD, offset=7)
            sent.assert_not_called()  # not before the commit
        assert len(callbacks) == 1
    sent.assert_called_once_with("test:log:1", "test.said", GOOD, offset=7)


def test_declarations_name_their_payload_fields() -> None:
    found = {(e.kind, e.name): e for e in events.declared()}
    said = found[("test:open", "test.said")]
    assert said.payload is Said and said.durable is False
    assert found[("test:log", "test.said")].durable is True
    assert {"presence.state", "presence.join", "presence.leave", "presence.typing"} <= {
        e.name for e in events.declared(events.PRESENCE)
    }
    assert [a.name for a in events.declared_actions()][:4] == [
        "subscribe",
        "unsubscribe",
        "ping",
        "typing",
    ]
