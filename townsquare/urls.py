from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from realtime.views import PublishView, TokenView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/token/", TokenView.as_view(), name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/publish/", PublishView.as_view(), name="api-publish"),
    path("api/", include("chat.api_urls")),
    path("api/", include("shop.api_urls")),
    path("api/", include("notifications.api_urls")),
    path("shop/", include("shop.urls")),
    path("notifications/", include("notifications.urls")),
    path("", include("chat.urls")),
]
