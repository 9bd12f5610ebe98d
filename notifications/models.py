"""The per-user notification inbox."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Notification(models.Model):
    """One notification for one user. Its id is its offset on the ``user:<id>`` stream."""

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=40)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["recipient", "id"], name="notif_recipient_id"),
            models.Index(
                fields=["recipient"],
                name="notif_recipient_unread",
                condition=models.Q(read_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.recipient_id}: {self.title}"
