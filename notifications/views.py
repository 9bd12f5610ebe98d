"""The notifications page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from . import selectors

PAGE = 50


@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    """``/notifications/``: the newest notifications; new ones appear live."""
    assert isinstance(request.user.pk, int)
    notifications = list(selectors.notification_list(user_id=request.user.pk)[:PAGE])
    return render(request, "notifications/inbox.html", {"notifications": notifications})
