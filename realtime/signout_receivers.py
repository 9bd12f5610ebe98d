"""Django's signals turned into sign-outs (``realtime.signout``), whoever made the change.

- ``user_logged_out`` (Django's ``logout()``: the logout view, the admin's): the sockets of
  that session (Django sends the signal before it flushes the session, so the key is there).
- ``pre_save``/``post_save`` of the user model: ``is_active`` going from true to false
  ends every socket of the user; a new password hash (``set_password``, the admin's password
  form, ``manage.py changepassword``, a shell) ends the other sessions' and the older tokens'
  sockets. The stored row is read before the save (one query, skipped when ``update_fields``
  names neither field, as a login's ``last_login`` update does) because the instance may have
  been changed by hand, not through a setter.
- ``post_delete`` of the user model: every socket of the user.

Model signals see the admin, the API, services, the shell and management commands alike.
They do not fire for ``QuerySet.update()``, ``bulk_update()`` or raw SQL: code that
deactivates users that way must call ``realtime.signout.announce`` itself. Every sign-out is
published after the transaction commits (``transaction.on_commit``; at once outside one), so
a rolled-back change ends nothing.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save

from .signout import SignOut, announce
from .tokens import password_fingerprint

#: Instance attribute holding ``(password, is_active)`` as stored before the save.
_BEFORE = "_realtime_signin_before"
_WATCHED = frozenset({"password", "is_active"})


def _announce_on_commit(message: SignOut, using: str | None = None) -> None:
    transaction.on_commit(partial(announce, message), using=using, robust=True)


def on_logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """``user_logged_out``: end the sockets signed in by the request's session."""
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if user is None or user.pk is None or not key:
        return
    _announce_on_commit(SignOut(user=user.pk, reason="logout", session=key))


def remember_before(
    sender: Any, instance: Any, raw: bool = False, using: str | None = None,
    update_fields: Any = None, **kwargs: Any,
) -> None:
    """``pre_save`` of the user model: read the stored password and ``is_active``."""
    if raw or instance._state.adding or instance.pk is None:
        return
    if update_fields is not None and not _WATCHED & set(update_fields):
        return
    row = (
        sender._base_manager.using(using)
        .filter(pk=instance.pk)
        .values_list("password", "is_active")
        .first()
    )
    instance.__dict__[_BEFORE] = row


def on_user_saved(
    sender: Any, instance: Any, created: bool = False, raw: bool = False,
    using: str | None = None, **kwargs: Any,
) -> None:
    """``post_save`` of the user model: a deactivation or a new password ends sockets."""
    before = instance.__dict__.pop(_BEFORE, None)
    if before is None or created or raw:
        return
    password, active = before
    if active and not instance.is_active:
        _announce_on_commit(SignOut(user=instance.pk, reason="inactive"), using)
    elif password != instance.password:
        message = SignOut(
            user=instance.pk, reason="password", password=password_fingerprint(instance)
        )
        _announce_on_commit(message, using)


def on_user_deleted(sender: Any, instance: Any, using: str | None = None, **kwargs: Any) -> None:
    """``post_delete`` of the user model: end every socket of the user."""
    if instance.pk is not None:
        _announce_on_commit(SignOut(user=instance.pk, reason="deleted"), using)


def connect() -> None:
    """Connect the receivers (``RealtimeConfig.ready``); idempotent (``dispatch_uid``)."""
    user_model = get_user_model()
    user_logged_out.connect(on_logged_out, dispatch_uid="realtime.signout.logged_out")
    pre_save.connect(remember_before, sender=user_model, dispatch_uid="realtime.signout.pre")
    post_save.connect(on_user_saved, sender=user_model, dispatch_uid="realtime.signout.saved")
    post_delete.connect(
        on_user_deleted, sender=user_model, dispatch_uid="realtime.signout.deleted"
    )
