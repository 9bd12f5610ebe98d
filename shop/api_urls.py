from django.urls import path

from . import api

urlpatterns = [
    path("items/", api.ItemListView.as_view(), name="api-items"),
    path("items/<id:pk>/", api.ItemDetailView.as_view(), name="api-item"),
    path("items/<id:pk>/purchase/", api.PurchaseView.as_view(), name="api-item-purchase"),
    path("items/<id:pk>/watch/", api.WatchView.as_view(), name="api-item-watch"),
]
