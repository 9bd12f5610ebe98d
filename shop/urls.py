from django.urls import path

from . import views

app_name = "shop"
urlpatterns = [
    path("", views.item_list, name="items"),
    path("item/<id:item_id>/", views.item_detail, name="item"),
    path("purchases/", views.purchase_list, name="purchases"),
]
