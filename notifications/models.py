"""The per-user notification inbox."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Inbox(models.Model):
    """A user's inbox counter: ``last_offset`` is the offset of their newest notification.

    Offsets on ``user:<id>`` are per-user sequence numbers (1, 2, 3, …) assigned in the
    writing transaction, not row ids: ids are handed out before commit, so on PostgreSQL a
    lower id can become visible after a higher one, and a client resuming after the higher one
    would never see it. A gapless sequence lets a client tell a gap from silence.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="inbox"
    )
    last_offset = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "inboxes"

    def __str__(self) -> str:
        """``inbox of alice at 12``."""
        return f"inbox of {self.user} at {self.last_offset}"


class Notification(models.Model):
    """One notification for one user; ``offset`` is its place on the ``user:<id>`` stream."""

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=40)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    #: Where the notification leads: a path on this site (``/shop/item/3/``), or "" for nowhere.
    url = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    offset = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["recipient", "offset"], name="notif_recipient_offset")
        ]
        indexes = [
            models.Index(
                fields=["recipient"],
                name="notif_recipient_unread",
                condition=models.Q(read_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        """``alice #12: Moka pot: 8 left``."""
        return f"{self.recipient} #{self.offset}: {self.title}"
