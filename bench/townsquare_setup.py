"""Create the benchmark's users and rooms in a Townsquare database; print them as JSON.

Run by ``bench/run.py`` with the server's environment (``DATABASE_URL``, ``SECRET_KEY``),
after ``migrate`` and ``demo``, before the server starts:

    python bench/townsquare_setup.py --users 100 --rooms 50 --password PASSWORD

Prints ``{"users": [{"id", "username", "token"}], "rooms": [id, ...], "channel_layer": ...}``
(the channel layer's backend class, as the server will configure it).

- Users ``bench0``..``bench<N-1>``: ``bench0`` gets ``--password`` (``run.py`` signs it in
  through ``POST /api/token/``, the real path); the others get an unusable password and a
  token minted here with ``realtime.tokens.issue_token``, the function behind that endpoint.
  Signing 100 users in over HTTP would cost the server about 100 PBKDF2 checks (tens of
  CPU-seconds on the core the benchmark measures) and tells nothing about fan-out.
- Rooms ``bench-0``..``bench-<M-1>``: public, durable (every ``chat.send`` is stored, then
  published), with no members (public rooms need none to read or write).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "townsquare.settings")
    import django

    django.setup()

    from django.conf import settings
    from django.contrib.auth.models import User
    from django.db import transaction

    from chat.models import Room
    from realtime.tokens import issue_token

    names = [f"bench{i}" for i in range(args.users)]
    with transaction.atomic():
        existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
        new = []
        for name in names:
            if name in existing:
                continue
            user = User(username=name, email=f"{name}@bench.invalid")
            user.set_unusable_password()
            new.append(user)
        User.objects.bulk_create(new)
        first = User.objects.get(username=names[0])
        first.set_password(args.password)
        first.save(update_fields=["password"])
        for i in range(args.rooms):
            Room.objects.get_or_create(name=f"bench-{i}", defaults={"is_private": False})

    users = {u.username: u for u in User.objects.filter(username__in=names)}
    rooms = {r.name: r.pk for r in Room.objects.filter(name__startswith="bench-")}
    out = {
        "users": [
            {"id": users[n].pk, "username": n, "token": issue_token(users[n])[0]} for n in names
        ],
        "rooms": [rooms[f"bench-{i}"] for i in range(args.rooms)],
        "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
