"""Demo rooms for ``manage.py demo``."""

from __future__ import annotations

from django.contrib.auth.models import User

from . import selectors, services
from .models import Room


def _room(name: str, *, creator: User, is_private: bool) -> Room:
    """The room called ``name``, created by ``services.room_create`` if missing."""
    try:
        return selectors.room_get_by_name(name=name)
    except Room.DoesNotExist:
        return services.room_create(user=creator, name=name, is_private=is_private)


def load(users: dict[str, User]) -> str:
    """Public rooms lobby and random; private room staff for alice and bob. Idempotent.

    Rooms are created by alice (staff: private rooms are hers to create, and no quota).
    """
    creator = users["alice"]
    for name in ("lobby", "random"):
        _room(name, creator=creator, is_private=False)
    staff = _room("staff", creator=creator, is_private=True)
    if not staff.is_private:
        staff.is_private = True
        staff.save(update_fields=["is_private"])
    staff.members.set([users["alice"], users["bob"]])
    return "Rooms: lobby, random (public); staff (private: alice, bob)."
