"""Shop pages: the item list and an item page, both with live stock, and "My purchases"."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from . import selectors
from .money import CURRENCY

#: Purchases per page of "My purchases".
PURCHASES_PER_PAGE = 20


def item_list(request: HttpRequest) -> HttpResponse:
    """``/shop/``: every item with its live quantity (public)."""
    user_id = request.user.pk if request.user.is_authenticated else None
    return render(request, "shop/item_list.html", {"items": selectors.item_list(user_id=user_id)})


def item_detail(request: HttpRequest, item_id: int) -> HttpResponse:
    """``/shop/item/<id>/``: live quantity, a buy form and a watch toggle."""
    user_id = request.user.pk if request.user.is_authenticated else None
    item = get_object_or_404(selectors.item_list(user_id=user_id), pk=item_id)
    return render(request, "shop/item_detail.html", {"item": item, "currency": CURRENCY})


@login_required
def purchase_list(request: HttpRequest) -> HttpResponse:
    """``/shop/purchases/?page=<n>``: the signed-in user's purchases, newest first, paginated.

    Anonymous visitors are sent to the sign-in page. A missing, non-numeric or out-of-range
    ``page`` shows the first or the last page (``Paginator.get_page``), never an error.
    """
    assert isinstance(request.user.pk, int)
    purchases = selectors.purchase_list(user_id=request.user.pk)
    page = Paginator(purchases, PURCHASES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "shop/purchase_list.html", {"page": page})
