"""Room creation: the name rule, case-insensitive uniqueness, the per-user quota, and that
every creating path goes through ``services.room_create``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import override_settings
from django.utils import timezone

from chat import services
from chat.models import Room
from chat.tests.conftest import Demo

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
