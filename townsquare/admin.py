"""The user admin: Django's own, with deletions that keep every app's invariants.

- Deleting a user first takes them out of each room through
  ``chat.services.room_members_change`` (``chat.member_left``; their subscriptions to private
  rooms end on every worker), then deletes them: their messages move to the inactive
  ``[deleted]`` account (``Message.author``'s ``on_delete``), so every room's offsets stay
  gapless. What is theirs alone goes with them: their notifications (their own stream, which
  nobody else reads), purchases (a record; the stock is not given back) and watches. The
  Notification and Purchase pages never delete one row at a time (a hole in a live stream,
  stock not given back); deleting the whole user is allowed all the same.
- The ``[deleted]`` account can be neither changed (it must never get a password or become
  active) nor deleted (its messages would have nowhere to go). Django's username rule
  (letters, digits and ``@.+-_``) keeps anyone from creating an account of that name.

Here, in the project package, because a user's rows belong to every app.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from chat.models import DELETED_USERNAME
from chat.services import room_members_change
from notifications.models import Notification
from shop.models import Purchase


def _is_deleted_account(obj: Any) -> bool:
    return obj is not None and obj.get_username() == DELETED_USERNAME


class TownsquareUserAdmin(UserAdmin[User]):
    """Django's ``UserAdmin``; see the module's docstring."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Not for ``[deleted]``: it must stay inactive, with no usable password."""
        return not _is_deleted_account(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Not for ``[deleted]``: it holds deleted users' messages."""
        return not _is_deleted_account(obj) and super().has_delete_permission(request, obj)

    def get_deleted_objects(
        self, objs: Sequence[User] | QuerySet[User], request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """What deleting ``objs`` takes with it; a user's own notifications and purchases go
        with them, although their pages never delete one."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for model in (Notification, Purchase):
            perms_needed.discard(str(model._meta.verbose_name))
        return deleted, counts, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        """Called to delete one user: ``delete_users``."""
        delete_users([obj], by=_staff(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        """Called by the "delete selected" action: ``delete_users``, never ``[deleted]``."""
        delete_users(queryset.exclude(username=DELETED_USERNAME), by=_staff(request))


def _staff(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # the admin admits signed-in staff only
    return request.user


def delete_users(users: Iterable[User], *, by: User | None) -> None:
    """Take each user out of their rooms (``chat.member_left``, revocation after commit),
    then delete them (their messages move to ``[deleted]``), in one transaction.

    Raises:
        PermissionDenied: ``by`` is not staff (``None`` is the system).
    """
    with transaction.atomic():
        for user in users:
            for room_id in user.rooms_joined.values_list("pk", flat=True):
                room_members_change(room_id=room_id, remove=[user.pk], by=by)
            user.delete()


admin.site.unregister(User)
admin.site.register(User, TownsquareUserAdmin)
