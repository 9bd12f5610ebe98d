"""The dashboard page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """``/dashboard/``: live counters and the chart; the numbers arrive over the socket."""
    return render(request, "dashboard/dashboard.html", {"is_staff": request.user.is_staff})


def seed_feed(request: HttpRequest) -> HttpResponse:
    """``/test/`` (seed 000's page): the record count, live from ``ws/test/``."""
    return render(request, "dashboard/seed_feed.html")
