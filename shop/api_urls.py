from django.urls import path

from . import api

urlpatterns = [
    path("items/", api.ItemListView.as_view(), name="api-items"),
    path("items/<int:pk>/", api.ItemDetailView.as_view(), name="api-item"),
    path("items/<int:pk>/purchase/", api.PurchaseView.as_view(), name="api-item-purchase"),
    path("items/<int:pk>/watch/", api.WatchView.as_view(), name="api-item-watch"),
]
