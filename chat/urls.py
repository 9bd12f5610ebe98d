from django.urls import path

from . import mail_views, views

app_name = "chat"
urlpatterns = [
    path("", views.room_list, name="rooms"),
    path("chat/room/<id:room_id>/", views.room_detail, name="room"),
    path("chat/room/<id:room_id>/join/", views.room_join, name="join"),
    path("chat/room/<id:room_id>/leave/", views.room_leave, name="leave"),
    path("chat/<str:room_name>/", views.room_by_name, name="room-by-name"),
    path("settings/mail/", mail_views.mail_settings_page, name="mail-settings"),
]
