"""The core's one table: idempotency keys of the HTTP API's writes (``realtime.idempotency``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class IdempotencyKey(models.Model):
    """One ``Idempotency-Key`` a user sent with a write, and the answer it got.

    A row is written ``in_flight`` in a transaction of its own before the write runs (a
    concurrent retry sees it: 409), then, in the write's own transaction, set to ``done``
    with the answer's status and JSON body (a later retry gets that answer replayed). Unique
    per ``(user, key)``: the same key from two users is two keys. Rows older than
    ``IDEMPOTENCY_KEY_TTL_SECONDS`` are deleted by the leader's ``idempotency-expiry``
    service (``realtime.idempotency.delete_expired``).
    """

    class State(models.TextChoices):
        IN_FLIGHT = "in_flight", "in flight"
        DONE = "done", "done"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    #: The client's key, as sent (1 to 255 printable ASCII characters).
    key = models.CharField(max_length=255)
    #: ``"POST /api/items/1/purchase/"``: a key is for one operation on one resource.
    request_path = models.CharField(max_length=1024)
    #: SHA-256 (hex) of the request's body as canonical JSON (``request_fingerprint``).
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_FLIGHT)
    #: Random per attempt: only the attempt that holds the row may record its answer.
    attempt = models.CharField(max_length=32)
    #: The recorded answer (``done``): HTTP status and the JSON body exactly as sent.
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(db_index=True)
    #: When the current attempt took the key (``created_at`` unless an abandoned attempt's
    #: key was taken over).
    locked_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="realtime_idempotency_user_key")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"
