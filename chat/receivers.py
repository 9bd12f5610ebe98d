"""Live revocation: whoever stops being a member of a private room stops hearing it, now.

Membership changes by any path — the admin, the API, ``room_leave``, a shell — go through
``Room.members``; after the change commits, each removed user's open subscriptions to the
room end on every worker with ``error {code: "unsubscribed", stream, detail}``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction
from django.db.models.signals import m2m_changed
from django.dispatch import receiver

from realtime.publish import revoke

from .models import Room

DETAIL = "you are no longer a member of this private room"

# clear() reports no primary keys: who was there is read at pre_clear and kept here until
# post_clear, keyed by which side was cleared.
_clearing: dict[tuple[str, int], set[int]] = {}


@receiver(m2m_changed, sender=Room.members.through)
def _members_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    side = "room" if isinstance(instance, Room) else "user"
    if action == "pre_clear":
        related = instance.members if side == "room" else instance.rooms_joined
        _clearing[(side, instance.pk)] = set(related.values_list("pk", flat=True))
        return
    if action not in ("post_remove", "post_clear"):
        return
    if action == "post_clear":
        pk_set = _clearing.pop((side, instance.pk), set())
    if isinstance(instance, Room):
        pairs = [(instance.pk, u) for u in pk_set or ()] if instance.is_private else []
    else:
        rooms = pk_set
        private = Room.objects.filter(pk__in=rooms or (), is_private=True).values_list(
            "pk", flat=True
        )
        pairs = [(room_id, instance.pk) for room_id in private]
    for room_id, user_id in pairs:
        transaction.on_commit(partial(revoke, f"chat:room:{room_id}", user_id, DETAIL))
