"""``manage.py demo``: demo users, rooms and items (idempotent)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

import chat.demo
import shop.demo

DEMO_PASSWORD = "townsquare-demo"
DEMO_USERS = ["alice", "bob", "carol", "dave"]


class Command(BaseCommand):
    help = "Create the demo users (alice, bob, carol, dave), rooms and items; safe to run again."

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
        lines = [
            f"Demo users {', '.join(DEMO_USERS)} — password: {DEMO_PASSWORD} (alice is staff)",
            chat.demo.load(users),
            shop.demo.load(users),
        ]
        self.stdout.write("\n".join(lines))
