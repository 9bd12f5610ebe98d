"""The ``shop:item:<id>`` stream kind: an item's stock, public and ephemeral.

Events: ``shop.stock`` (``stock_data``), as a snapshot on subscribe and on every change.
"""

from __future__ import annotations

from realtime.events import Payload, declare, describe_kind
from realtime.protocol import ErrorCode, ProtocolError
from realtime.registry import AnyUser, Event, register_stream

from .models import Item
from .selectors import stock_data


class Stock(Payload):
    """``shop.stock`` data (``selectors.stock_data``)."""

    item: int
    name: str
    quantity: int
    #: Grows by one with every change: keep the event with the highest one.
    version: int


describe_kind(
    "shop:item", address="shop:item:{id}", description="An item's stock; public, ephemeral."
)
declare(
    "shop:item",
    "shop.stock",
    Stock,
    snapshot=True,
    summary="The item's stock: the snapshot on subscribe, then after every change.",
)


def _item(key: str) -> Item:
    item = Item.objects.filter(pk=int(key)).first() if key.isdigit() else None
    if item is None:
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no item {key!r}")
    return item


def authorize_item(user: AnyUser, key: str) -> None:
    """Items are public: anyone may watch stock, signed in or not."""
    _item(key)


def snapshot_item(user: AnyUser, key: str) -> list[Event]:
    """The current stock."""
    return [Event("shop.stock", stock_data(_item(key)))]


register_stream("shop:item", authorize=authorize_item, snapshot=snapshot_item)
