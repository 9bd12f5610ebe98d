"""The chat HTTP API: rooms, messages (cursor pagination), posting, JWT and session auth."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError
from rest_framework.test import APIClient

from chat import services
from chat.models import Message
from realtime.tokens import issue_token

from .conftest import Demo

pytestmark = pytest.mark.django_db


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(user)[0]}")
    return client


def test_token_endpoint_issues_a_working_jwt(demo: Demo) -> None:
    response = APIClient().post(
        "/api/token/", {"username": "alice", "password": "townsquare-demo"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert client.get("/api/rooms/").status_code == 200


@pytest.mark.parametrize(
    "payload",
    [{"username": "alice", "password": "wrong"}, {"username": "nobody", "password": "x"}],
)
def test_token_endpoint_refuses_bad_credentials(demo: Demo, payload: dict[str, str]) -> None:
    response = APIClient().post("/api/token/", payload, format="json")
    assert response.status_code == 401
    assert response.json() == {"detail": "Unknown username or wrong password."}


def test_token_endpoint_validates_input(demo: Demo) -> None:
    response = APIClient().post("/api/token/", {"username": "alice"}, format="json")
    assert response.status_code == 400
    assert "password" in response.json()


@pytest.mark.parametrize(
    "header", ["Bearer not-a-token", "Bearer", "Bearer a b", "Bearer eyJhbGciOiJub25lIn0.e30."]
)
def test_bad_bearer_tokens_get_401(demo: Demo, header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/rooms/").status_code == 401


def test_anonymous_gets_401_or_403(demo: Demo) -> None:
    assert APIClient().get("/api/rooms/").status_code in (401, 403)


def test_room_list_shows_joined_and_public_rooms(demo: Demo) -> None:
    rooms = client_for(demo.carol).get("/api/rooms/").json()
    assert [(r["name"], r["is_private"], r["is_member"]) for r in rooms] == [
        ("lobby", False, False),
        ("random", False, False),
    ]
    rooms = client_for(demo.alice).get("/api/rooms/").json()
    assert [(r["name"], r["is_member"]) for r in rooms] == [
        ("lobby", False),
        ("random", False),
        ("staff", True),
    ]
    assert rooms[2]["stream"] == f"chat:room:{demo.staff.pk}"


def test_messages_newest_first_with_cursor_pagination(demo: Demo) -> None:
    for i in range(1, 8):
        services.message_create(user=demo.alice, room_id=demo.lobby.pk, text=f"m{i}")
    client = client_for(demo.bob)
    page = client.get(f"/api/rooms/{demo.lobby.pk}/messages/?page_size=3").json()
    assert [m["offset"] for m in page["results"]] == [7, 6, 5]
    assert page["results"][0]["author"] == {"id": demo.alice.pk, "username": "alice"}
    seen = [m["offset"] for m in page["results"]]
    while page["next"]:
        page = client.get(page["next"]).json()
        seen += [m["offset"] for m in page["results"]]
    assert seen == [7, 6, 5, 4, 3, 2, 1]


def test_post_message_uses_the_service_and_publishes(
    demo: Demo, django_capture_on_commit_callbacks: Any
) -> None:
    with (
        mock.patch("realtime.publish.publish_many") as publish_many,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client_for(demo.bob).post(
            f"/api/rooms/{demo.lobby.pk}/messages/",
            {"text": "over http", "client_id": "h1"},
            format="json",
        )
    assert response.status_code == 201
    body = response.json()
    assert (body["text"], body["offset"], body["client_id"]) == ("over http", 1, "h1")
    (event,) = publish_many.call_args.args[0]
    assert (event.stream, event.event, event.offset) == (
        f"chat:room:{demo.lobby.pk}",
        "chat.message",
        1,
    )


@pytest.mark.parametrize("payload", [{}, {"text": ""}, {"text": "x" * 4001}, {"text": ["x"]}])
def test_post_message_validation(demo: Demo, payload: dict[str, Any]) -> None:
    response = client_for(demo.bob).post(
        f"/api/rooms/{demo.lobby.pk}/messages/", payload, format="json"
    )
    assert response.status_code == 400
    assert "text" in response.json()
    assert Message.objects.count() == 0


def test_private_room_is_members_only(demo: Demo) -> None:
    services.message_create(user=demo.alice, room_id=demo.staff.pk, text="secret")
    carol = client_for(demo.carol)
    assert carol.get(f"/api/rooms/{demo.staff.pk}/messages/").status_code == 404
    response = carol.post(f"/api/rooms/{demo.staff.pk}/messages/", {"text": "x"}, format="json")
    assert response.status_code == 404
    assert Message.objects.count() == 1
    assert client_for(demo.bob).get(f"/api/rooms/{demo.staff.pk}/messages/").status_code == 200


def test_unknown_room_is_404(demo: Demo) -> None:
    client = client_for(demo.bob)
    assert client.get("/api/rooms/99999/messages/").status_code == 404
    assert (
        client.post("/api/rooms/99999/messages/", {"text": "x"}, format="json").status_code == 404
    )


def test_join_and_leave(demo: Demo) -> None:
    client = client_for(demo.carol)
    joined = client.post(f"/api/rooms/{demo.random.pk}/join/")
    assert (joined.status_code, joined.json()["is_member"]) == (200, True)
    assert demo.random.members.filter(pk=demo.carol.pk).exists()
    left = client.post(f"/api/rooms/{demo.random.pk}/leave/")
    assert (left.status_code, left.json()["is_member"]) == (200, False)
    assert client.post(f"/api/rooms/{demo.staff.pk}/join/").status_code == 404


def test_session_auth_needs_csrf_for_posts(demo: Demo) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(demo.bob)
    assert client.get("/api/rooms/").status_code == 200
    response = client.post(f"/api/rooms/{demo.lobby.pk}/messages/", {"text": "x"}, format="json")
    assert response.status_code == 403
    assert Message.objects.count() == 0


def test_openapi_schema_lists_the_endpoints(demo: Demo) -> None:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = (
        response.json()["paths"]
        if response["content-type"].startswith("application/json")
        else None
    )
    if paths is None:
        import yaml

        paths = yaml.safe_load(response.content)["paths"]
    for path in (
        "/api/token/",
        "/api/rooms/",
        "/api/rooms/{room_id}/messages/",
        "/api/rooms/{room_id}/join/",
    ):
        assert path in paths


def test_a_database_outage_answers_a_json_503_and_stores_nothing(demo: Demo) -> None:
    with mock.patch(
        "chat.services.message_create_many",
        side_effect=OperationalError("connection to server failed"),
    ):
        response = client_for(demo.bob).post(
            f"/api/rooms/{demo.lobby.pk}/messages/", {"text": "lost?"}, format="json"
        )
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "1"
    assert response.json() == {
        "detail": "the database is unavailable; nothing was written, retry",
        "code": "unavailable",
    }
    assert not Message.objects.filter(text="lost?").exists()


def test_a_private_room_is_the_unknown_rooms_404_to_non_members(demo: Demo) -> None:
    """Every chat endpoint answers a non-member of a private room exactly as for a room that
    does not exist: no name, no size, no membership (the leave endpoint told them before)."""
    services.message_create(user=demo.alice, room_id=demo.staff.pk, text="secret")
    carol = client_for(demo.carol)
    unknown = 999_999
    calls = [
        ("get", "messages/", None),
        ("post", "messages/", {"text": "x"}),
        ("post", "join/", None),
        ("post", "leave/", None),
    ]
    for method, tail, body in calls:
        private = getattr(carol, method)(f"/api/rooms/{demo.staff.pk}/{tail}", body, format="json")
        missing = getattr(carol, method)(f"/api/rooms/{unknown}/{tail}", body, format="json")
        assert (private.status_code, private.json()) == (missing.status_code, missing.json())
        assert private.status_code == 404, tail
        assert "staff" not in private.content.decode()
    assert Message.objects.count() == 1
    assert not demo.staff.members.filter(pk=demo.carol.pk).exists()
    # A member may still leave (and then gets the same 404 as everyone else).
    bob = client_for(demo.bob)
    left = bob.post(f"/api/rooms/{demo.staff.pk}/leave/")
    assert (left.status_code, left.json()["is_member"]) == (200, False)
    assert bob.post(f"/api/rooms/{demo.staff.pk}/leave/").status_code == 404
