from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView

from dashboard import views as dashboard_views
from realtime import health
from realtime.asyncapi import asyncapi_view
from realtime.views import PublishView, TokenView
from townsquare import pages
from townsquare.converters import IdConverter

# <id:…> in every app's urls: ids 1..2**63-1, anything else a 404 (townsquare/converters.py).
# Registered before the include()s below import the apps' url modules.
register_converter(IdConverter, "id")

# Error pages: JSON under /api/ ({"detail", "code"}), elsewhere Django's views with our
# templates (townsquare/templates/403.html, 404.html, 500.html).
handler400 = "realtime.api_errors.bad_request"
handler403 = "realtime.api_errors.permission_denied"
handler404 = "realtime.api_errors.page_not_found"
handler500 = "realtime.api_errors.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    # Operator endpoints (realtime/health.py): Prometheus scrape, liveness, readiness.
    # Prometheus scrapes /metrics by default: no trailing slash, no redirect.
    path("metrics", health.metrics_view, name="metrics"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", pages.api_index, name="api-index"),
    path("api/docs/", pages.ApiDocsView.as_view(), name="api-docs"),
    path("api/token/", TokenView.as_view(), name="api-token"),
    # YAML; ?format=json for JSON.
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/asyncapi.json", asyncapi_view, name="api-asyncapi"),  # the /ws/ protocol
    path("api/publish/", PublishView.as_view(), name="api-publish"),
    path("api/", include("chat.api_urls")),
    path("api/", include("shop.api_urls")),
    path("api/", include("notifications.api_urls")),
    path("api/", include("dashboard.api_urls")),
    path("dashboard/", include("dashboard.urls")),
    path("test/", dashboard_views.seed_feed, name="seed-feed"),
    path("shop/", include("shop.urls")),
    path("notifications/", include("notifications.urls")),
    path("", include("chat.urls")),
]
