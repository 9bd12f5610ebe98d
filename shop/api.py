"""HTTP API of the shop (DRF). Reads are public; writes need a signed-in user.

``GET   /api/items/``, ``GET /api/items/<id>/``     items with stock (``is_watching`` if signed in)
``PATCH /api/items/<id>/ {quantity}``               staff: set stock (seed 001's update API)
``POST  /api/items/<id>/purchase/ {quantity}``      201, or 409 ``out_of_stock`` (buying does
                                                    not watch the item)
``POST``/``DELETE /api/items/<id>/watch/``          watch / unwatch
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny, IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.api_errors import api_error
from realtime.idempotency import IDEMPOTENCY_PARAMETERS, IDEMPOTENCY_RESPONSES, idempotent

from . import selectors, services
from .models import Item


class ItemSerializer(serializers.ModelSerializer[Item]):
    is_watching = serializers.BooleanField(read_only=True, default=False)
    stream = serializers.CharField(read_only=True)

    class Meta:
        model = Item
        fields = [
            "id",
            "name",
            "description",
            "price_cents",
            "quantity",
            "version",
            "is_watching",
            "stream",
        ]
        read_only_fields = fields


class QuantitySerializer(serializers.Serializer[Any]):
    quantity = serializers.IntegerField(min_value=0, max_value=services.MAX_QUANTITY)


PurchaseResponse = inline_serializer(
    "PurchaseResponse",
    {
        "id": serializers.IntegerField(),
        "item": serializers.IntegerField(),
        "quantity": serializers.IntegerField(),
        "price_cents": serializers.IntegerField(help_text="The unit price paid, in cents."),
        "total_cents": serializers.IntegerField(help_text="quantity × price_cents."),
        "remaining": serializers.IntegerField(),
        "created_at": serializers.DateTimeField(),
    },
)
OutOfStockResponse = inline_serializer(
    "OutOfStock",
    {
        "code": serializers.CharField(),
        "detail": serializers.CharField(),
        # Only with "out_of_stock" (not "idempotency_key_in_flight").
        "requested": serializers.IntegerField(required=False),
        "available": serializers.IntegerField(required=False),
    },
)


def _user_id(request: Request) -> int | None:
    return request.user.pk if request.user.is_authenticated else None


def _translate(exc: Exception) -> Exception:
    # The shared mapping (realtime.errors), with this API's field and sentence.
    return api_error(exc, field="quantity", not_found="No such item.")


class ItemListView(generics.ListAPIView[Item]):
    """Every item with its stock."""

    serializer_class = ItemSerializer
    permission_classes = [AllowAny]
    pagination_class = None

    def get_queryset(self) -> QuerySet[Item]:
        return selectors.item_list(user_id=_user_id(self.request))


class ItemDetailView(generics.RetrieveAPIView[Item]):
    """One item; ``PATCH {quantity}`` (staff) sets its stock and notifies its watchers."""

    serializer_class = ItemSerializer

    def get_permissions(self) -> list[Any]:
        return [IsAdminUser()] if self.request.method == "PATCH" else [AllowAny()]

    def get_queryset(self) -> QuerySet[Item]:
        return selectors.item_list(user_id=_user_id(self.request))

    @extend_schema(request=QuantitySerializer, responses={200: ItemSerializer})
    def patch(self, request: Request, pk: int) -> Response:
        form = QuantitySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        assert isinstance(request.user, User)  # IsAdminUser let it through
        try:
            services.item_stock_set(
                item_id=pk, quantity=form.validated_data["quantity"], actor=request.user
            )
        except Exception as exc:
            raise _translate(exc) from exc
        return Response(ItemSerializer(self.get_queryset().get(pk=pk)).data)


class PurchaseView(APIView):
    """``POST {quantity}`` → 201 ``{id, item, quantity, price_cents, total_cents, remaining,
    created_at}``; 409 ``{code: "out_of_stock", detail, requested, available}`` when there is
    not enough; never oversells, never makes the buyer a watcher. With an ``Idempotency-Key``
    a retry buys nothing and gets the first answer (``realtime.idempotency``)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=QuantitySerializer,
        parameters=IDEMPOTENCY_PARAMETERS,
        responses={
            201: PurchaseResponse,
            409: OpenApiResponse(
                OutOfStockResponse,
                description="`out_of_stock` (with `requested` and `available`), or "
                "`idempotency_key_in_flight`",
            ),
            **IDEMPOTENCY_RESPONSES,
        },
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        form = QuantitySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            purchase = services.purchase_create(
                user=request.user,  # type: ignore[arg-type]
                item_id=pk,
                quantity=form.validated_data["quantity"],
            )
        except services.OutOfStock as exc:
            return Response(
                {
                    "code": "out_of_stock",
                    "detail": f"Not enough stock: {exc.requested} requested, "
                    f"{exc.available} available.",
                    "requested": exc.requested,
                    "available": exc.available,
                },
                status=status.HTTP_409_CONFLICT,
            )
        except Exception as exc:
            raise _translate(exc) from exc
        return Response(
            {
                "id": purchase.pk,
                "item": purchase.item_id,
                "quantity": purchase.quantity,
                "price_cents": purchase.price_cents,
                "total_cents": purchase.total_cents,
                "remaining": purchase.item.quantity,
                "created_at": purchase.created_at,
            },
            status=status.HTTP_201_CREATED,
        )


class WatchSerializer(serializers.Serializer[Any]):
    """``{item: int, is_watching: bool}``: the answer of the watch endpoint."""

    item = serializers.IntegerField()
    is_watching = serializers.BooleanField()


class WatchView(APIView):
    """``POST`` watches the item, ``DELETE`` stops watching → ``{item, is_watching}``."""

    permission_classes = [IsAuthenticated]

    def _set(self, request: Request, pk: int, watching: bool) -> Response:
        try:
            services.watch_set(user=request.user, item_id=pk, watching=watching)  # type: ignore[arg-type]
        except Exception as exc:
            raise _translate(exc) from exc
        return Response({"item": pk, "is_watching": watching})

    @extend_schema(request=None, responses=WatchSerializer)
    def post(self, request: Request, pk: int) -> Response:
        return self._set(request, pk, True)

    @extend_schema(request=None, responses=WatchSerializer)
    def delete(self, request: Request, pk: int) -> Response:
        return self._set(request, pk, False)
