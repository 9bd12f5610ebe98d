"""Chat pages: room list, room page (404 for non-members), room by name, join/leave."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from chat import services
from chat.models import Room

from .conftest import Demo

pytestmark = pytest.mark.django_db


def without_csrf_token(html: str) -> str:
    """The page without its CSRF token (the header's sign-out form), masked anew each time."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)


def signed_in(user: object) -> Client:
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return client


def test_pages_need_login(demo: Demo) -> None:
    for path in ("/", f"/chat/room/{demo.lobby.pk}/", "/chat/lobby/"):
        response = Client().get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_room_list_shows_joined_and_public_rooms(demo: Demo) -> None:
    alice = signed_in(demo.alice).get("/").content.decode()
    assert f"/chat/room/{demo.staff.pk}/" in alice
    carol = signed_in(demo.carol).get("/").content.decode()
    assert f"/chat/room/{demo.lobby.pk}/" in carol
    assert f"/chat/room/{demo.staff.pk}/" not in carol


def test_private_room_page_is_the_unknown_rooms_404_for_non_members(demo: Demo) -> None:
    carol = signed_in(demo.carol)
    unknown = without_csrf_token(carol.get("/chat/room/999999/").content.decode())
    for path in (f"/chat/room/{demo.staff.pk}/", "/chat/staff/", "/chat/STAFF/"):
        response = carol.get(path)
        assert response.status_code == 404
        # Neither the name nor the members of the private room are on the page.
        html = response.content.decode()
        assert "staff" not in html.lower() and "alice" not in html and "bob" not in html
        assert without_csrf_token(html) == unknown
    assert signed_in(demo.bob).get(f"/chat/room/{demo.staff.pk}/").status_code == 200
    assert signed_in(demo.bob).get("/chat/staff/").status_code == 200


def test_room_page_renders_history_escaped_and_the_offset_to_resume_from(demo: Demo) -> None:
    services.message_create(user=demo.alice, room_id=demo.lobby.pk, text="first")
    services.message_create(
        user=demo.alice, room_id=demo.lobby.pk, text="<img src=x onerror=alert(1)>"
    )
    response = signed_in(demo.bob).get(f"/chat/room/{demo.lobby.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "first" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img src=x" not in html
    assert response.context["last_offset"] == 2
    assert [m["message"].offset for m in response.context["messages"]] == [1, 2]
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_room_by_name_asks_then_creates_a_public_room_on_post(demo: Demo) -> None:
    dave = signed_in(demo.dave)
    asked = dave.get("/chat/newbox/")
    assert asked.status_code == 200
    html = asked.content.decode()
    assert 'Room <span class="room-name">newbox</span> does not exist yet' in html
    assert '<form method="post" action="/chat/newbox/">' in html
    assert "csrfmiddlewaretoken" in html
    assert not Room.objects.filter(name="newbox").exists()  # GET wrote nothing
    created = dave.post("/chat/newbox/")
    assert (created.status_code, created["Location"]) == (302, "/chat/newbox/")
    room = Room.objects.get(name="newbox")
    assert (room.is_private, room.created_by) == (False, demo.dave)
    shown = dave.get("/chat/newbox/")
    assert shown.status_code == 200 and shown.context["room"] == room


def test_join_and_leave_forms(demo: Demo) -> None:
    carol = signed_in(demo.carol)
    assert carol.post(f"/chat/room/{demo.random.pk}/join/").status_code == 302
    assert demo.random.members.filter(pk=demo.carol.pk).exists()
    assert carol.post(f"/chat/room/{demo.random.pk}/leave/").status_code == 302
    assert not demo.random.members.filter(pk=demo.carol.pk).exists()
    assert carol.post(f"/chat/room/{demo.staff.pk}/join/").status_code == 404
    assert carol.post(f"/chat/room/{demo.staff.pk}/leave/").status_code == 404
    assert carol.get(f"/chat/room/{demo.random.pk}/join/").status_code == 405


def test_the_open_room_form_works_without_its_script(demo: Demo) -> None:
    client = Client()
    client.force_login(demo.alice)
    response = client.get("/", {"name": "book-club"})
    assert (response.status_code, response["Location"]) == (302, "/chat/book-club/")
    assert not Room.objects.filter(name="book-club").exists()
    assert client.get("/", {"name": "a/b"}).status_code == 200
