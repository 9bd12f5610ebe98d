"""Room creation: the name rule, case-insensitive uniqueness, the per-user quota, and that
every creating path goes through ``services.room_create``."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from chat import selectors, services
from chat.models import Message, Room
from chat.tests.conftest import Demo
from realtime.tests.conftest import communicator, receive, send, session_cookie
from realtime.tokens import issue_token

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "name",
    ["a", "book-club", "book_club", "Café", "x" * 60, "2026", "-", "日本語"],
)
def test_valid_names_create_a_public_room_with_no_members(demo: Demo, name: str) -> None:
    room = services.room_create(user=demo.carol, name=name)
    room.refresh_from_db()
    assert (room.name, room.is_private, room.created_by) == (name, False, demo.carol)
    assert room.members.count() == 0


@pytest.mark.parametrize(
    "name",
    [
        "",
        " lobby2",
        "lobby2 ",
        "book club",
        "x" * 61,
        "a\x00b",
        "a\nb",
        "a\tb",
        "a.b",
        "..",
        "a/b",
        "a\ud800",
        "<script>",
        None,
        42,
    ],
)
def test_invalid_names_are_refused_and_nothing_is_stored(demo: Demo, name: object) -> None:
    before = Room.objects.count()
    with pytest.raises(ValidationError) as info:
        services.room_create(user=demo.carol, name=name)
    assert info.value.code == "invalid_name"
    assert Room.objects.count() == before


def test_a_taken_name_is_refused_ignoring_case(demo: Demo) -> None:
    for name in ("lobby", "LOBBY", "Lobby"):
        with pytest.raises(ValidationError) as info:
            services.room_create(user=demo.carol, name=name)
        assert info.value.code == "name_taken"
    assert Room.objects.filter(name__iexact="lobby").count() == 1


def test_anonymous_and_inactive_users_cannot_create(demo: Demo) -> None:
    with pytest.raises(PermissionDenied):
        services.room_create(user=AnonymousUser(), name="anon")
    demo.carol.is_active = False
    with pytest.raises(PermissionDenied):
        services.room_create(user=demo.carol, name="inactive")
    assert not Room.objects.filter(name__in=["anon", "inactive"]).exists()


def test_private_rooms_are_created_by_staff_only(demo: Demo) -> None:
    with pytest.raises(PermissionDenied):
        services.room_create(user=demo.carol, name="secret", is_private=True)
    admin = User.objects.create_user("op", is_staff=True)
    room = services.room_create(user=admin, name="secret", is_private=True)
    assert room.is_private and room.created_by == admin


@override_settings(ROOM_CREATE_QUOTA=3)
def test_the_quota_counts_the_last_hour_per_user(demo: Demo) -> None:
    for n in range(3):
        services.room_create(user=demo.carol, name=f"c{n}")
    with pytest.raises(services.RoomQuotaExceeded) as info:
        services.room_create(user=demo.carol, name="c3")
    assert info.value.quota == 3 and 3500 < info.value.retry_after <= 3601
    assert not Room.objects.filter(name="c3").exists()
    # Another user has their own quota.
    services.room_create(user=demo.dave, name="d0")
    # Once the oldest room is more than an hour old, one more may be created.
    oldest = Room.objects.get(name="c0")
    Room.objects.filter(pk=oldest.pk).update(created_at=timezone.now() - timedelta(minutes=61))
    services.room_create(user=demo.carol, name="c3")
    with pytest.raises(services.RoomQuotaExceeded):
        services.room_create(user=demo.carol, name="c4")


@override_settings(ROOM_CREATE_QUOTA=1)
def test_staff_are_exempt_from_the_quota(demo: Demo) -> None:
    admin = User.objects.create_user("op", is_staff=True)
    for n in range(3):
        services.room_create(user=admin, name=f"s{n}")
    assert Room.objects.filter(created_by=admin).count() == 3


@override_settings(ROOM_CREATE_QUOTA=0)
def test_a_quota_of_zero_means_no_limit(demo: Demo) -> None:
    for n in range(12):
        services.room_create(user=demo.carol, name=f"z{n}")
    assert Room.objects.filter(created_by=demo.carol).count() == 12


def test_the_default_quota_is_ten(demo: Demo) -> None:
    assert services.room_create_quota() == 10
    for n in range(10):
        services.room_create(user=demo.carol, name=f"q{n}")
    with pytest.raises(services.RoomQuotaExceeded):
        services.room_create(user=demo.carol, name="q10")


# --- the page: GET asks, POST (CSRF) creates ---------------------------------------------------


def signed_in(user: User, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def csrf_post(client: Client, path: str) -> HttpResponse:
    """Post the confirm form as a browser does: the token from the page it shows."""
    page = client.get(path).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, page
    return client.post(path, {"csrfmiddlewaretoken": token[1]})  # type: ignore[return-value]


def test_get_of_a_new_name_writes_nothing_however_often(demo: Demo) -> None:
    dave = signed_in(demo.dave)
    before = Room.objects.count()
    for _ in range(20):
        assert dave.get("/chat/newbox/").status_code == 200
        assert dave.head("/chat/newbox/").status_code == 200
    assert Room.objects.count() == before


def test_the_confirm_button_needs_the_csrf_token(demo: Demo) -> None:
    dave = signed_in(demo.dave, csrf=True)
    # What an <img> or a cross-site form can do: no token.
    assert dave.post("/chat/newbox/").status_code == 403
    assert not Room.objects.filter(name="newbox").exists()
    created = csrf_post(dave, "/chat/newbox/")
    assert (created.status_code, created["Location"]) == (302, "/chat/newbox/")
    assert Room.objects.get(name="newbox").created_by == demo.dave


def test_anonymous_confirm_goes_to_login_and_creates_nothing(demo: Demo) -> None:
    response = Client().post("/chat/newbox/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not Room.objects.filter(name="newbox").exists()


def test_a_name_outside_the_rule_is_a_404_page_without_a_button(demo: Demo) -> None:
    dave = signed_in(demo.dave)
    for path in ("/chat/book%20club/", "/chat/a.b/", "/chat/x%00y/", f"/chat/{'x' * 61}/"):
        response = dave.get(path)
        assert response.status_code == 404, path
        html = response.content.decode()
        assert "That is not a room name" in html and 'id="create-room"' not in html
        assert "\x00" not in html
    assert dave.post("/chat/a.b/").status_code == 400
    assert dave.post("/chat/x%00y/").status_code == 400
    assert Room.objects.count() == 3


def test_an_existing_name_in_other_case_opens_that_room(demo: Demo) -> None:
    bob = signed_in(demo.bob)
    response = bob.get("/chat/LOBBY/")
    assert response.status_code == 200 and response.context["room"] == demo.lobby
    # Confirming a name taken meanwhile lands in that room, creating nothing.
    posted = bob.post("/chat/Lobby/")
    assert (posted.status_code, posted["Location"]) == (302, "/chat/Lobby/")
    assert bob.get(posted["Location"]).context["room"] == demo.lobby
    assert Room.objects.count() == 3


@override_settings(ROOM_CREATE_QUOTA=2)
def test_over_the_quota_the_page_says_when_and_answers_429(demo: Demo) -> None:
    dave = signed_in(demo.dave)
    assert dave.post("/chat/one/").status_code == 302
    assert dave.post("/chat/two/").status_code == 302
    refused = dave.post("/chat/three/")
    assert refused.status_code == 429
    assert 3500 < int(refused["Retry-After"]) <= 3601
    html = refused.content.decode()
    assert "You have created 2 rooms in the last hour" in html
    assert 'id="create-room"' in html  # the button stays, for later
    assert not Room.objects.filter(name="three").exists()


def test_the_room_list_pages_each_column(demo: Demo) -> None:
    names = [f"r{n:03}" for n in range(120)]
    Room.objects.bulk_create(Room(name=name) for name in names)
    demo.lobby.members.add(demo.carol)
    carol = signed_in(demo.carol)
    first = carol.get("/")
    public = [r.name for r in first.context["public"]]
    assert public == names[:50]  # random is after r119 by name
    assert [r.name for r in first.context["mine"]] == ["lobby"]
    html = first.content.decode()
    assert '<a rel="next" href="?page=2&amp;mine=1">Next</a>' in html
    assert 'rel="prev"' not in html
    last = carol.get("/?page=3")
    assert [r.name for r in last.context["public"]] == [*names[100:], "random"]
    assert '<a rel="prev" href="?page=2&amp;mine=1">Previous</a>' in last.content.decode()
    # A hostile page number is the nearest page, not an error.
    for query in ("?page=abc", "?page=-1", f"?page={'9' * 40}", "?mine=0&page=%00"):
        assert carol.get(f"/{query}").status_code == 200
    assert not Room.objects.filter(name="staff").filter(
        pk__in=[r.pk for r in carol.get("/?page=3").context["public"]]
    )


# --- the API ---------------------------------------------------------------------------------


def api_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(user)[0]}")
    return client


def test_post_api_rooms_creates_through_the_service(demo: Demo) -> None:
    response = api_for(demo.carol).post("/api/rooms/", {"name": "book-club"}, format="json")
    assert response.status_code == 201
    room = Room.objects.get(name="book-club")
    assert response.json() == {
        "id": room.pk,
        "name": "book-club",
        "is_private": False,
        "is_member": False,
        "last_offset": 0,
        "stream": f"chat:room:{room.pk}",
    }
    assert room.created_by == demo.carol


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "book club"}, 400),
        ({"name": "a\x00b"}, 400),
        ({"name": "x" * 10_000}, 400),
        ({"name": ["x"]}, 400),
        ({"name": "LOBBY"}, 400),
        ({}, 400),
        ({"name": "secret", "is_private": True}, 403),
    ],
)
def test_post_api_rooms_refusals(demo: Demo, body: dict[str, object], status: int) -> None:
    response = api_for(demo.carol).post("/api/rooms/", body, format="json")
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert Room.objects.count() == 3


@override_settings(ROOM_CREATE_QUOTA=1)
def test_post_api_rooms_over_the_quota_is_429(demo: Demo) -> None:
    carol = api_for(demo.carol)
    assert carol.post("/api/rooms/", {"name": "one"}, format="json").status_code == 201
    refused = carol.post("/api/rooms/", {"name": "two"}, format="json")
    assert refused.status_code == 429
    assert 3500 < int(refused["Retry-After"]) <= 3601
    assert refused.json()["detail"] == (
        f"You may create 1 rooms per hour. Expected available in {refused['Retry-After']} seconds."
    )
    assert not Room.objects.filter(name="two").exists()


def test_post_api_rooms_by_session_needs_csrf(demo: Demo) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(demo.carol)
    assert client.post("/api/rooms/", {"name": "nocsrf"}, format="json").status_code == 403
    assert not Room.objects.filter(name="nocsrf").exists()


def test_get_api_rooms_pages_with_a_link_header(demo: Demo) -> None:
    Room.objects.bulk_create(Room(name=f"r{n:03}") for n in range(250))
    carol = api_for(demo.carol)  # not a member of the private room staff
    seen: list[str] = []
    url: str | None = "/api/rooms/"
    pages = 0
    while url:
        response = carol.get(url)
        assert response.status_code == 200
        body = response.json()
        assert isinstance(body, list) and len(body) <= 100
        seen += [room["name"] for room in body]
        links = dict(
            (rel, target)
            for target, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', response.get("Link", ""))
        )
        url = links.get("next")
        pages += 1
    assert pages == 3
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 252  # + lobby, random
    assert "staff" not in seen
    capped = carol.get("/api/rooms/?page_size=100000").json()
    assert len(capped) == 252  # at most 500 a page
    assert len(carol.get("/api/rooms/?page_size=10").json()) == 10


def test_forged_cursors_are_a_404_not_a_500(demo: Demo) -> None:
    bob = api_for(demo.bob)

    def cursor(position: str) -> str:
        return base64.b64encode(f"p={quote(position)}".encode()).decode()

    for position in ("a\x00b", "x" * 61):
        assert bob.get(f"/api/rooms/?cursor={cursor(position)}").status_code == 404
    for position in ("abc", "9" * 30, "-1", "1\x00"):
        response = bob.get(f"/api/rooms/{demo.lobby.pk}/messages/?cursor={cursor(position)}")
        assert response.status_code == 404, position
    assert bob.get("/api/rooms/?cursor=%00").status_code == 200  # decodes to no cursor


# --- the seed-003 socket ---------------------------------------------------------------------


async def seed_socket(
    user: User, name: str, origin: bytes | None = b"http://127.0.0.1"
) -> tuple[bool, int | None]:
    cookie = await database_sync_to_async(session_cookie)(user)
    comm = communicator(f"/ws/chat/{name}/", cookie=cookie, origin=origin)
    connected, code = await comm.connect()
    if connected:
        await comm.disconnect()
    return connected, code


@pytest.mark.django_db(transaction=True)
@override_settings(ROOM_CREATE_QUOTA=2)
async def test_seed_socket_creates_through_the_quota(demo: Demo) -> None:
    assert (await seed_socket(demo.carol, "s1"))[0]
    assert (await seed_socket(demo.carol, "s2"))[0]
    assert (await seed_socket(demo.carol, "s3")) == (False, 4003)
    # Existing rooms still open over the quota.
    assert (await seed_socket(demo.carol, "s1"))[0]
    assert (await seed_socket(demo.carol, "lobby"))[0]
    names = await database_sync_to_async(
        lambda: sorted(Room.objects.filter(created_by=demo.carol).values_list("name", flat=True))
    )()
    assert names == ["s1", "s2"]


@pytest.mark.django_db(transaction=True)
async def test_seed_socket_from_another_site_or_anonymous_creates_nothing(demo: Demo) -> None:
    assert (await seed_socket(demo.carol, "evil", origin=b"http://evil.example"))[0] is False
    assert (await seed_socket(demo.carol, "evil", origin=None))[0] is False
    anonymous = communicator("/ws/chat/evil/")
    assert (await anonymous.connect())[0] is False
    assert not await database_sync_to_async(Room.objects.filter(name="evil").exists)()


# --- ids and names that no room can have: refused before any query ----------------------------


@pytest.mark.parametrize("room_id", [2**63, 2**64, 10**30, 0, -1, True])
def test_out_of_range_room_ids_name_no_room_without_a_query(
    demo: Demo, room_id: int, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(0):
        with pytest.raises(Room.DoesNotExist):
            selectors.room_get_readable(user=demo.bob, room_id=room_id)
        with pytest.raises(Room.DoesNotExist):
            services.message_check(user=demo.bob, room_id=room_id, text="x")


@pytest.mark.parametrize("name", ["a\x00b", "\x00", "a\x7fb", "a\ud800", "", "x" * 61, None])
def test_impossible_room_names_are_looked_up_without_a_query(
    demo: Demo, name: object, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(0), pytest.raises(Room.DoesNotExist):
        selectors.room_get_by_name(name=name)


def test_a_bad_room_id_in_a_group_commit_fails_only_its_own_message(demo: Demo) -> None:
    """One sender's huge room id must not fail the other senders' messages of the batch
    (SQLite raised OverflowError for the whole batch)."""
    good = services.message_check(user=demo.bob, room_id=demo.lobby.pk, text="kept")
    bad = services.NewMessage(user=demo.bob, room_id=2**63, text="lost", client_id="")
    results = services.message_create_many([bad, good])
    assert isinstance(results[0], Room.DoesNotExist)
    assert isinstance(results[1], Message) and results[1].offset == 1
    assert list(Message.objects.values_list("text", flat=True)) == ["kept"]


@pytest.mark.django_db(transaction=True)
async def test_chat_send_to_a_huge_room_id_is_not_found_and_the_socket_stays(demo: Demo) -> None:
    cookie = await database_sync_to_async(session_cookie)(demo.bob)
    comm = communicator("/ws/", cookie=cookie)
    assert (await comm.connect())[0]
    await send(comm, {"type": "chat.send", "room": 2**63, "text": "x", "ref": 1})
    error = await receive(comm)
    assert (error["type"], error["code"], error.get("ref")) == ("error", "not_found", 1)
    await send(comm, {"type": "chat.send", "room": demo.lobby.pk, "text": "still", "ref": 2})
    ack = await receive(comm)
    assert (ack["type"], ack["ref"], ack["offset"]) == ("ack", 2, 1)
    await comm.disconnect()
