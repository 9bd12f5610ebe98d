"""Fixtures for the chat tests: the demo users and rooms."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from chat.models import Room


@dataclass
class Demo:
    alice: User
    bob: User
    carol: User
    dave: User
    lobby: Room
    random: Room
    staff: Room


@pytest.fixture
def demo(db: None) -> Demo:
    call_command("demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    users = {u.username: u for u in User.objects.all()}
    rooms = {r.name: r for r in Room.objects.all()}
    return Demo(
        alice=users["alice"],
        bob=users["bob"],
        carol=users["carol"],
        dave=users["dave"],
        lobby=rooms["lobby"],
        random=rooms["random"],
        staff=rooms["staff"],
    )
