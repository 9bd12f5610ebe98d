from django.urls import path

from . import api

urlpatterns = [
    path("rooms/", api.RoomListView.as_view(), name="api-rooms"),
    path(
        "rooms/<id:room_id>/messages/",
        api.MessageListCreateView.as_view(),
        name="api-room-messages",
    ),
    path(
        "rooms/<id:room_id>/messages/<id:message_id>/",
        api.MessageDetailView.as_view(),
        name="api-room-message",
    ),
    path(
        "rooms/<id:room_id>/messages/<id:message_id>/reactions/",
        api.MessageReactionsView.as_view(),
        name="api-room-message-reactions",
    ),
    path("rooms/<id:room_id>/join/", api.RoomMembershipView.as_view(action="join")),
    path("rooms/<id:room_id>/leave/", api.RoomMembershipView.as_view(action="leave")),
    path("rooms/<id:room_id>/read/", api.RoomReadView.as_view(), name="api-room-read"),
]
