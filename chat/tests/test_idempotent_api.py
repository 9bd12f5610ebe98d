"""``POST /api/rooms/<id>/messages/`` with an ``Idempotency-Key``: a retry stores and
publishes nothing and gets the first answer (``realtime.idempotency``)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from chat.models import Message
from realtime.tokens import issue_token

from .conftest import Demo

pytestmark = pytest.mark.django_db


def api(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(user)[0]}")
    return client


def send(client: APIClient, room: int, body: dict[str, Any], key: str) -> Any:
    return client.post(
        f"/api/rooms/{room}/messages/", body, format="json", headers={"Idempotency-Key": key}
    )


def test_a_retried_send_stores_one_message_and_answers_alike(
    demo: Demo, django_capture_on_commit_callbacks: Any
) -> None:
    client = api(demo.bob)
    before = Message.objects.count()
    with django_capture_on_commit_callbacks() as first_publishes:
        first = send(client, demo.lobby.pk, {"text": "hello"}, "m-1")
    with django_capture_on_commit_callbacks() as retry_publishes:
        again = send(client, demo.lobby.pk, {"text": "hello"}, "m-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert Message.objects.count() == before + 1
    assert len(first_publishes) == 1
    assert retry_publishes == []  # nothing published for the replay


def test_another_text_with_the_same_key_is_422(demo: Demo) -> None:
    client = api(demo.bob)
    before = Message.objects.count()
    assert send(client, demo.lobby.pk, {"text": "one"}, "m-2").status_code == 201
    reused = send(client, demo.lobby.pk, {"text": "two"}, "m-2")
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert Message.objects.count() == before + 1


def test_a_private_room_404_is_recorded_for_a_non_member(demo: Demo) -> None:
    client = api(demo.dave)  # not a member of "staff"
    hidden = send(client, demo.staff.pk, {"text": "x"}, "m-3")
    assert hidden.status_code == 404
    assert hidden.json() == {"detail": "No such room."}
    again = send(client, demo.staff.pk, {"text": "x"}, "m-3")
    assert (again.status_code, again.content, again["Idempotent-Replayed"]) == (
        404,
        hidden.content,
        "true",
    )
