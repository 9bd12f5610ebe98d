"""Chat pages: the room list, the room page (history, live list, composer, members), and the
confirmation that creates a room by name.

No GET writes (issue 11): ``GET /chat/<name>/`` shows an existing room or, for a new valid
name, a page with a confirm button; the button POSTs (CSRF token) to the same URL, which
creates the room through ``services.room_create`` (name rule, per-user quota). A private room
answers a non-member the same 404 as a room that does not exist (no name, no member list).
"""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from rest_framework.pagination import Cursor

from . import selectors, services
from .api import MessageCursorPagination
from .models import Message, Room

#: Messages on a room page when it opens (more load as one scrolls up).
HISTORY_ON_OPEN = 50
#: At most this many unread messages are rendered from the first unread one; with more, the
#: page opens at the newest (the "new messages" line is then above, once scrolled to).
UNREAD_ON_OPEN = 200
#: Rooms per page in each column of the room list.
ROOMS_PER_PAGE = 50
NO_SUCH_ROOM = "No such room."


def _page(request: HttpRequest, rooms: object, param: str) -> Page:
    # get_page() turns a missing, non-numeric or out-of-range number into the first or the
    # last page, so a hostile ?page= is never an error.
    return Paginator(rooms, ROOMS_PER_PAGE).get_page(request.GET.get(param))  # type: ignore[arg-type]


@login_required
def room_list(request: HttpRequest) -> HttpResponse:
    """``/``: the rooms the user joined (``?mine=<n>``) and the other public rooms
    (``?page=<n>``), each by name, 50 a page, with previous/next links.

    ``?name=<room name>`` (the "open a room" form, when its script has not run) redirects to
    ``/chat/<name>/``, as the script does: reading, never creating.
    """
    assert request.user.is_authenticated
    name = request.GET.get("name", "").strip()
    if name and "/" not in name:
        return redirect("chat:room-by-name", room_name=name)
    joined = selectors.room_annotate_read_state(
        selectors.room_list_joined(user=request.user), user=request.user
    )
    mine = _page(request, joined, "mine")
    last = selectors.message_map(room.last_message_id for room in mine)
    context = {
        "mine": mine,
        # Each joined room with its read state: `room.unread`, `room.last_offset`, and its
        # newest message as `preview` ({id, offset, author, text, created_at, deleted}).
        "joined": [
            {
                "room": room,
                "preview": selectors.message_preview_data(last.get(room.last_message_id)),
            }
            for room in mine
        ],
        "public": _page(request, selectors.room_list_public_not_joined(user=request.user), "page"),
    }
    return render(request, "chat/room_list.html", context)


def _readable(request: HttpRequest, room_id: object) -> Room:
    """The room, or Http404 when it does not exist or is private to others (one answer for
    both, so a non-member learns nothing of a private room)."""
    try:
        return selectors.room_get_readable(user=request.user, room_id=room_id)  # type: ignore[arg-type]
    except (Room.DoesNotExist, PermissionDenied) as exc:
        raise Http404(NO_SUCH_ROOM) from exc


def _older_url(room: Room, messages: list[Message]) -> str | None:
    """The API page of the messages before the first one shown (``GET
    /api/rooms/<id>/messages/?cursor=…``, newest first), or None when there are none."""
    if not messages or messages[0].offset <= 1:
        return None
    pagination = MessageCursorPagination()
    pagination.base_url = reverse("api-room-messages", kwargs={"room_id": room.pk})
    return str(
        pagination.encode_cursor(Cursor(offset=0, reverse=False, position=messages[0].offset))
    )


def _history(room: Room, first_unread: int | None) -> list[Message]:
    """The messages a room page opens with, oldest first: the newest ``HISTORY_ON_OPEN``, or,
    when the first unread one is older, every message from it (up to ``UNREAD_ON_OPEN``)."""
    latest = selectors.message_list_latest(room_id=room.pk, limit=HISTORY_ON_OPEN)
    if first_unread is None or not latest or first_unread >= latest[0].offset:
        return latest
    unread = selectors.message_list_after(
        room_id=room.pk, since=first_unread - 1, limit=UNREAD_ON_OPEN + 1
    )
    if len(unread) > UNREAD_ON_OPEN or unread[-1].offset != latest[-1].offset:
        return latest  # too many: open at the newest
    return unread


def _render_room(request: HttpRequest, room: Room) -> HttpResponse:
    """The room page of a room ``_readable`` returned."""
    reading = selectors.read_state(user=request.user, room_id=room.pk)
    messages = _history(room, reading.first_unread)
    user = request.user
    context = {
        "room": room,
        "messages": [
            # reactions: JSON for the item's data-reactions (timeline.js draws the bar).
            {"message": m, "reactions": json.dumps(selectors.message_reactions(m))}
            for m in messages
        ],
        # The page subscribes with `since` = this offset, so nothing sent between rendering
        # and subscribing is lost.
        "last_offset": messages[-1].offset if messages else room.last_offset,
        "members": selectors.room_member_names(room=room),
        "is_member": selectors.room_is_member(user=user, room=room),
        "page": {
            "older_url": _older_url(room, messages),
            # Delete on others' messages: the rule services.message_delete enforces.
            "can_moderate": selectors.room_can_moderate(user=user, room_id=room.pk),
            "first_unread": reading.first_unread,
            "last_read": reading.last_read,
        },
    }
    return render(request, "chat/room.html", context)


@login_required
def room_detail(request: HttpRequest, room_id: int) -> HttpResponse:
    """``/chat/room/<id>/`` (seed 002): 404 for an unknown room, an id outside
    ``1..2**63-1``, and a private room the user is not a member of."""
    return _render_room(request, _readable(request, room_id))


def _new_room_page(
    request: HttpRequest, name: str, *, error: str = "", status: int = 200, can_create: bool
) -> HttpResponse:
    """The "Room <name> does not exist yet" page, or its error (``chat/room_new.html``).

    ``name`` is shown only if it could be a room's name (no control characters)."""
    if not selectors.room_name_lookup_valid(name):
        name, can_create = "", False
    context = {"name": name, "error": error, "can_create": can_create}
    return render(request, "chat/room_new.html", context, status=status)


BAD_NAME = f"That is not a room name: a room name has {services.ROOM_NAME_RULE}."


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def room_by_name(request: HttpRequest, room_name: str) -> HttpResponse:
    """``/chat/<name>/`` (seed 003).

    GET: the room of that name (exact, else ignoring case) → the room page; a private room
    of a non-member, or a name no room could have (``services.ROOM_NAME_RULE``) → 404; a new
    valid name → 200, "Room <name> does not exist yet" with a confirm button.

    POST (the button; CSRF-protected by Django's middleware): ``services.room_create`` →
    302 to ``/chat/<name>/``. A room of that name created meanwhile → 302 to it as well.
    Errors, on the same page: 400 a bad name, 403 refused, 429 over ``ROOM_CREATE_QUOTA``
    (``Retry-After`` in seconds).
    """
    if request.method == "POST":
        return _create_by_name(request, room_name)
    try:
        room = selectors.room_get_by_name(name=room_name)
    except Room.DoesNotExist:
        try:
            services.room_name_check(room_name)
        except ValidationError:
            return _new_room_page(request, room_name, error=BAD_NAME, status=404, can_create=False)
        return _new_room_page(request, room_name, can_create=True)
    return _render_room(request, _readable(request, room.pk))


def _create_by_name(request: HttpRequest, room_name: str) -> HttpResponse:
    try:
        services.room_create(user=request.user, name=room_name)
    except services.RoomQuotaExceeded as exc:
        response = _new_room_page(
            request,
            room_name,
            error=f"You have created {exc.quota} rooms in the last hour; "
            f"try again in {exc.retry_after} seconds.",
            status=429,
            can_create=True,
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    except PermissionDenied as exc:
        return _new_room_page(request, room_name, error=str(exc), status=403, can_create=False)
    except ValidationError as exc:
        if exc.code != "name_taken":
            return _new_room_page(request, room_name, error=BAD_NAME, status=400, can_create=False)
        # Created meanwhile (or taken ignoring case): GET shows it, or a 404 if private.
    return redirect("chat:room-by-name", room_name=room_name)


@login_required
@require_POST
def room_join(request: HttpRequest, room_id: int) -> HttpResponse:
    """Join a public room (form post), then show it. 404: unknown room, or private."""
    assert request.user.is_authenticated
    room = _readable(request, room_id)
    try:
        services.room_join(user=request.user, room_id=room.pk)
    except Room.DoesNotExist as exc:
        raise Http404(NO_SUCH_ROOM) from exc
    except PermissionDenied:
        return HttpResponseForbidden("Private rooms are joined by invitation.")
    return redirect("chat:room", room_id=room.pk)


@login_required
@require_POST
def room_leave(request: HttpRequest, room_id: int) -> HttpResponse:
    """Leave a room (form post), then go back to the room list. 404: unknown room, or a
    private room the user is not a member of."""
    assert request.user.is_authenticated
    room = _readable(request, room_id)
    try:
        services.room_leave(user=request.user, room_id=room.pk)
    except Room.DoesNotExist as exc:
        raise Http404(NO_SUCH_ROOM) from exc
    return redirect("chat:rooms")
