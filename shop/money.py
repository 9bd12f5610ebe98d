"""Money as the shop shows it: every price is in cents of one currency, ``CURRENCY``."""

from __future__ import annotations

#: ISO 4217 code of every ``*_cents`` amount; pages pass it to ``Intl.NumberFormat``.
CURRENCY = "USD"


def format_cents(cents: int) -> str:
    """``1234`` → ``"$12.34"``; ``123456789`` → ``"$1,234,567.89"`` (US dollars)."""
    return f"${cents // 100:,}.{cents % 100:02d}"
