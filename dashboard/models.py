"""Seed 000's feed: a switch (the seed's ``Queue.status``) and its records (``Random``)."""

from __future__ import annotations

from django.db import models


class FeedSwitch(models.Model):
    """The one switch of the feed (row id 1). While ``status`` is 1, a record is added every
    ``FEED_INTERVAL_SECONDS``; ``last_tick_at`` lets the database refuse a second tick in the
    same interval, whoever asks."""

    OFF, ON = 0, 1
    status = models.IntegerField(choices=[(OFF, "off"), (ON, "on")], default=OFF)
    last_tick_at = models.DateTimeField(null=True, blank=True, editable=False)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "feed switches"

    def __str__(self) -> str:
        """``feed on`` or ``feed off``."""
        return f"feed {'on' if self.status == self.ON else 'off'}"


class FeedRecord(models.Model):
    """One record added by the feed ticker."""

    text = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        """``record 7 (tick)``."""
        return f"record {self.pk} ({self.text})" if self.text else f"record {self.pk}"
