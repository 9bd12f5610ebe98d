"""Demo rooms for ``manage.py demo``."""

from __future__ import annotations

from django.contrib.auth.models import User

from .models import Room


def load(users: dict[str, User]) -> str:
    """Public rooms lobby and random; private room staff for alice and bob. Idempotent."""
    for name in ("lobby", "random"):
        Room.objects.get_or_create(name=name, defaults={"is_private": False})
    staff, _ = Room.objects.get_or_create(name="staff", defaults={"is_private": True})
    if not staff.is_private:
        staff.is_private = True
        staff.save(update_fields=["is_private"])
    staff.members.set([users["alice"], users["bob"]])
    return "Rooms: lobby, random (public); staff (private: alice, bob)."
