"""The chat's admin pages. Every write goes through ``chat.services``, or is not offered.

- ``Room``: created by ``room_create`` (the name rule; staff are exempt from the quota). Its
  members are changed through ``room_members_change``: the page's member list is compared
  with the stored one, and each user added gets ``chat.member_joined``, each removed
  ``chat.member_left`` and, in a private room, the end of their live subscription. A room's
  privacy is chosen at creation and read-only afterwards: making a public room private would
  leave every non-member's open subscription running (nothing can revoke a subscription of
  someone who was never a member). Its moderators (who may delete any of its messages) are
  set through ``room_moderators_set``; a room's creator is its first. Renaming follows the
  name rule. Deleting a room
  (``room_delete``) deletes its whole stream, messages included, and ends its members'
  subscriptions. ``last_offset`` is never written here: saving a room writes the edited
  fields only, so a message sent while the page was open keeps its offset.
- ``Message``: added through ``message_create`` (the next offset of the room, ``chat.message``
  after commit; the author is the chosen user, or the operator when none is chosen). Its text
  is never edited here: ``message_edit`` allows the author only, and staff do not put words in
  someone's mouth. The action "Delete selected messages (tombstone)" deletes through
  ``message_delete`` as the operator (staff may): each becomes a tombstone at its offset
  (text and reactions gone, ``chat.message_deleted`` published at a new offset), so open
  pages and replays see it. The row itself is never deleted: that would leave a hole in the
  room's offsets, which clients read as a lost message.
- Users: ``townsquare/admin.py`` (deleting one takes them out of their rooms through
  ``room_members_change``; their messages move to ``[deleted]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from townsquare.admin_writes import AdminRefused, ServiceWritesAdmin

from . import missed_mail, services
from .models import DELETED_USERNAME, MailPreference, Message, MissedMessageMail, Room


def _staff(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # the admin admits signed-in staff only
    return request.user


class RoomForm(forms.ModelForm[Room]):
    """A room's fields; a new name follows the name rule (``room_name_check``)."""

    class Meta:
        model = Room
        fields = ["name", "is_private", "members", "moderators"]

    def clean_name(self) -> str:
        """The name rule and case-insensitive uniqueness, for a changed name only (rooms
        named before the rule keep their name)."""
        name: str = self.cleaned_data["name"]
        if self.instance.pk is not None and name == self.instance.name:
            return name
        services.room_name_check(name)
        clash = Room.objects.filter(name__iexact=name).exclude(pk=self.instance.pk)
        if clash.exists():
            raise ValidationError(f"A room called {name!r} exists.", code="name_taken")
        return name


@admin.register(Room)
class RoomAdmin(ServiceWritesAdmin[Room]):
    """Rooms: creation, members and deletion through the services; see the module's
    docstring."""

    form = RoomForm
    list_display = ["name", "is_private", "last_offset", "created_by", "created_at"]
    list_filter = ["is_private"]
    list_select_related = ["created_by"]
    search_fields = ["name"]
    filter_horizontal = ["members", "moderators"]
    fields = [
        "name",
        "is_private",
        "members",
        "moderators",
        "last_offset",
        "created_by",
        "created_at",
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Room | None = None) -> list[str]:
        """Offsets and history always; privacy once the room exists."""
        fixed = ["last_offset", "created_by", "created_at"]
        return fixed if obj is None else ["is_private", *fixed]

    def formfield_for_manytomany(
        self, db_field: models.ManyToManyField[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> forms.ModelMultipleChoiceField[Any] | None:
        """Members are chosen among real accounts: not ``[deleted]``."""
        if db_field.name in ("members", "moderators"):
            kwargs["queryset"] = User.objects.exclude(username=DELETED_USERNAME)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Room, form: Any, change: bool) -> None:
        """Called to store the room: ``room_create`` when new; else the edited fields only."""
        if change:
            fields = [f for f in form.changed_data if f in ("name",)]
            if fields:
                obj.save(update_fields=fields)
            return
        try:
            room = services.room_create(
                user=_staff(request), name=obj.name, is_private=obj.is_private
            )
        except ValidationError as exc:
            raise AdminRefused.from_validation_error(exc, field="name") from exc
        except (PermissionDenied, services.RoomQuotaExceeded) as exc:
            raise AdminRefused(str(exc)) from exc
        for field in ("pk", "created_by_id", "created_at", "last_offset"):
            setattr(obj, field, getattr(room, field))

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Called after ``save_model``: the member list through ``room_members_set`` (not
        the form's ``members.set()``, which would publish nothing)."""
        members = form.cleaned_data.pop("members", None)
        moderators = form.cleaned_data.pop("moderators", None)
        super().save_related(request, form, formsets, change)
        if moderators is not None:
            services.room_moderators_set(
                room_id=form.instance.pk, user_ids=[u.pk for u in moderators], by=_staff(request)
            )
        if members is not None:
            services.room_members_set(
                room_id=form.instance.pk, user_ids=[u.pk for u in members], by=_staff(request)
            )

    def get_deleted_objects(
        self, objs: Sequence[Room] | QuerySet[Room], request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """What deleting ``objs`` takes with it. The messages go with their room (the whole
        stream, no gap left behind), so the Message page's "never delete" does not stop it."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed.discard(str(Message._meta.verbose_name))
        return deleted, counts, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: Room) -> None:
        """Called to delete one room: ``room_delete``."""
        services.room_delete(room_id=obj.pk, by=_staff(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        """Called by the "delete selected" action: ``room_delete`` per room."""
        for pk in queryset.values_list("pk", flat=True):
            services.room_delete(room_id=pk, by=_staff(request))


class MessageForm(forms.ModelForm[Message]):
    """A new message: room, author (blank: the operator) and text."""

    class Meta:
        model = Message
        fields = ["room", "author", "text"]


@admin.register(Message)
class MessageAdmin(ServiceWritesAdmin[Message]):
    """Messages: added through ``message_create``, then read-only; see the module's
    docstring."""

    form = MessageForm
    list_display = ["room", "offset", "author", "short_text", "created_at", "edited_at", "deleted"]
    list_filter = ["room"]
    search_fields = ["text", "author__username"]
    list_select_related = ["room", "author"]
    raw_id_fields = ["author"]
    actions = ["tombstone_selected"]

    @admin.display(description="deleted", boolean=True)
    def deleted(self, obj: Message) -> bool:
        """Whether the message is a tombstone."""
        return obj.deleted_at is not None

    @admin.action(description="Delete selected messages (tombstone: the offset stays)")
    def tombstone_selected(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        """Called by the action: ``message_delete`` for each, as the operator."""
        done = 0
        for pk in queryset.values_list("pk", flat=True):
            done += services.message_delete(user=_staff(request), message_id=pk).changed
        self.message_user(request, f"{done} message(s) deleted.")

    @admin.display(description="text")
    def short_text(self, obj: Message) -> str:
        """The first 80 characters of the text."""
        return obj.text if len(obj.text) <= 80 else obj.text[:79] + "…"

    def get_fields(self, request: HttpRequest, obj: Message | None = None) -> tuple[str, ...]:
        """Room, author and text to add one; everything, read-only, to view one."""
        if obj is None:
            return ("room", "author", "text")
        return (
            "room",
            "offset",
            "author",
            "text",
            "client_id",
            "created_at",
            "edited_at",
            "deleted_at",
        )

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> forms.ModelChoiceField[Any] | None:
        """The author may be left blank: the operator writes the message."""
        if db_field.name == "author":
            kwargs["required"] = False
            kwargs["help_text"] = "Leave blank to write as yourself."
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        """Never: text edits are the author's (``message_edit``); deleting is the action."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        """Never the row: it would be a hole in the room's gapless offsets (the action leaves
        a tombstone instead)."""
        return False

    def save_model(self, request: HttpRequest, obj: Message, form: Any, change: bool) -> None:
        """Called to store a new message: ``message_create``; a refusal is a form error."""
        author = obj.author if obj.author_id is not None else _staff(request)
        if author.get_username() == DELETED_USERNAME:
            raise AdminRefused("Nobody writes as the [deleted] account.", field="author")
        try:
            made = services.message_create(user=author, room_id=obj.room_id, text=obj.text)
        except ValidationError as exc:
            raise AdminRefused.from_validation_error(exc, field="text") from exc
        except PermissionDenied as exc:
            raise AdminRefused(
                f"{author.get_username()} is not a member of this private room.", field="author"
            ) from exc
        except Room.DoesNotExist as exc:
            raise AdminRefused("This room no longer exists.", field="room") from exc
        for field in ("pk", "author", "text", "offset", "client_id", "created_at"):
            setattr(obj, field, getattr(made, field))


@admin.register(MailPreference)
class MailPreferenceAdmin(admin.ModelAdmin[MailPreference]):
    """Users' missed-message mail switch (a user without a row gets the mail). Saved through
    ``missed_mail.mail_preference_set``, the settings page's path."""

    list_display = ["user", "missed_messages", "updated_at"]
    list_filter = ["missed_messages"]
    search_fields = ["user__username", "user__email"]
    raw_id_fields = ["user"]

    def save_model(
        self, request: HttpRequest, obj: MailPreference, form: Any, change: bool
    ) -> None:
        saved = missed_mail.mail_preference_set(user=obj.user, missed_messages=obj.missed_messages)
        obj.pk, obj.updated_at = saved.pk, saved.updated_at


@admin.register(MissedMessageMail)
class MissedMessageMailAdmin(admin.ModelAdmin[MissedMessageMail]):
    """When each user last got a missed-message mail about each room (read only: written by
    the leader's job, which it paces)."""

    list_display = ["user", "room", "sent_at", "offset"]
    search_fields = ["user__username", "room__name"]
    readonly_fields = ["user", "room", "sent_at", "offset"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
