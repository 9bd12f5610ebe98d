"""Shop pages: the item list and an item page, both with live stock."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from . import selectors


def item_list(request: HttpRequest) -> HttpResponse:
    """``/shop/``: every item with its live quantity (public)."""
    user_id = request.user.pk if request.user.is_authenticated else None
    return render(request, "shop/item_list.html", {"items": selectors.item_list(user_id=user_id)})


def item_detail(request: HttpRequest, item_id: int) -> HttpResponse:
    """``/shop/item/<id>/``: live quantity, a buy form and a watch toggle."""
    user_id = request.user.pk if request.user.is_authenticated else None
    item = get_object_or_404(selectors.item_list(user_id=user_id), pk=item_id)
    return render(request, "shop/item_detail.html", {"item": item})
