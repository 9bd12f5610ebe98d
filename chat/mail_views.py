"""The mail settings page: ``/settings/mail/`` turns missed-message mail on or off."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from .missed_mail import mail_preference_get, mail_preference_set, mail_settings


@login_required
@require_http_methods(["GET", "POST"])
def mail_settings_page(request: HttpRequest) -> HttpResponse:
    """GET: the form; POST ``missed_messages=on`` (checkbox; absent = off) → saved, back to
    the page (post/redirect/get)."""
    if request.method == "POST":
        mail_preference_set(
            user=request.user, missed_messages=request.POST.get("missed_messages") == "on"
        )
        return redirect("chat:mail-settings")
    config = mail_settings()
    return render(
        request,
        "chat/mail_settings.html",
        {
            "missed_messages": mail_preference_get(user=request.user),
            "delay_minutes": round(config.delay / 60),
            "period_minutes": round(config.period / 60),
            "has_email": bool(getattr(request.user, "email", "")),
        },
    )
