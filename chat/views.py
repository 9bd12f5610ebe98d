"""Chat pages: the room list and the room page (history, live list, composer, members)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from . import selectors, services
from .models import Room

HISTORY_ON_OPEN = 50


@login_required
def room_list(request: HttpRequest) -> HttpResponse:
    """``/``: the rooms the user joined and every public room."""
    assert request.user.is_authenticated
    rooms = selectors.room_list_for_user(user=request.user)
    return render(request, "chat/room_list.html", {"rooms": rooms})


def _render_room(request: HttpRequest, room: Room) -> HttpResponse:
    try:
        selectors.room_get_readable(user=request.user, room_id=room.pk)
    except PermissionDenied:
        return HttpResponseForbidden("This room is private to its members.")
    messages = selectors.message_list_latest(room_id=room.pk, limit=HISTORY_ON_OPEN)
    context = {
        "room": room,
        "messages": messages,
        # The page subscribes with `since` = this offset, so nothing sent between rendering
        # and subscribing is lost.
        "last_offset": messages[-1].offset if messages else room.last_offset,
        "members": selectors.room_member_names(room=room),
        "is_member": selectors.room_is_member(user=request.user, room=room),
    }
    return render(request, "chat/room.html", context)


@login_required
def room_detail(request: HttpRequest, room_id: int) -> HttpResponse:
    """``/chat/room/<id>/`` (seed 002): 403 for a non-member of a private room."""
    try:
        room = Room.objects.get(pk=room_id)
    except Room.DoesNotExist as exc:
        raise Http404("No such room.") from exc
    return _render_room(request, room)


@login_required
def room_by_name(request: HttpRequest, room_name: str) -> HttpResponse:
    """``/chat/<name>/`` (seed 003): the room of that name, created as public if new."""
    try:
        room = services.room_get_or_create_public(name=room_name)
    except ValidationError as exc:
        raise Http404("Not a room name.") from exc
    return _render_room(request, room)


@login_required
@require_POST
def room_join(request: HttpRequest, room_id: int) -> HttpResponse:
    """Join a public room (form post), then show it."""
    assert request.user.is_authenticated
    try:
        services.room_join(user=request.user, room_id=room_id)
    except Room.DoesNotExist as exc:
        raise Http404("No such room.") from exc
    except PermissionDenied:
        return HttpResponseForbidden("Private rooms are joined by invitation.")
    return redirect("chat:room", room_id=room_id)


@login_required
@require_POST
def room_leave(request: HttpRequest, room_id: int) -> HttpResponse:
    """Leave a room (form post), then go back to the room list."""
    assert request.user.is_authenticated
    try:
        services.room_leave(user=request.user, room_id=room_id)
    except Room.DoesNotExist as exc:
        raise Http404("No such room.") from exc
    return redirect("chat:rooms")
