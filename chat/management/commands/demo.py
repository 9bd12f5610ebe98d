"""``manage.py demo``: demo users and rooms (idempotent)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from chat.models import Room

DEMO_PASSWORD = "townsquare-demo"
DEMO_USERS = ["alice", "bob", "carol", "dave"]


class Command(BaseCommand):
    help = "Create the demo users (alice, bob, carol, dave) and rooms; safe to run again."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        users = {}
        for name in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=name, defaults={"email": f"{name}@example.com"}
            )
            if created or not user.has_usable_password():
                user.set_password(DEMO_PASSWORD)
            # alice runs the place: staff and superuser, so the admin is hers.
            user.is_staff = user.is_superuser = name == "alice"
            user.save()
            users[name] = user
        for name in ("lobby", "random"):
            Room.objects.get_or_create(name=name, defaults={"is_private": False})
        staff, _ = Room.objects.get_or_create(name="staff", defaults={"is_private": True})
        if not staff.is_private:
            staff.is_private = True
            staff.save(update_fields=["is_private"])
        staff.members.set([users["alice"], users["bob"]])
        self.stdout.write(
            f"Demo users {', '.join(DEMO_USERS)} — password: {DEMO_PASSWORD}\n"
            "Rooms: lobby, random (public); staff (private: alice, bob). alice is staff."
        )
