from django.urls import path

from . import api

urlpatterns = [
    path("notifications/", api.NotificationListView.as_view(), name="api-notifications"),
    path("notifications/unread-count/", api.UnreadCountView.as_view(), name="api-unread"),
    path("notifications/<id:pk>/read/", api.MarkReadView.as_view(), name="api-notification-read"),
    path(
        "notifications/read-all/", api.MarkAllReadView.as_view(), name="api-notifications-read-all"
    ),
]
