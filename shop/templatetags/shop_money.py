"""``{% load shop_money %}``: ``{{ cents|money }}`` → ``$12.34`` (``shop.money.format_cents``)."""

from __future__ import annotations

from django import template

from shop.money import format_cents

register = template.Library()


@register.filter
def money(cents: int) -> str:
    """``1234`` → ``"$12.34"``."""
    return format_cents(int(cents))
