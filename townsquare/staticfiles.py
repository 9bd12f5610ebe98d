"""``django.contrib.staticfiles`` with what collectstatic leaves out (``INSTALLED_APPS``)."""

from __future__ import annotations

from django.contrib.staticfiles.apps import StaticFilesConfig as BaseStaticFilesConfig


class StaticFilesConfig(BaseStaticFilesConfig):
    """Django's ``staticfiles`` app, whose collectstatic also skips drf-spectacular-sidecar's
    Redoc bundle and Swagger UI's script source maps: /api/docs/ serves Swagger UI only, and
    they were over half of the collected bytes (18 of 34 MB, gzip copies included), which
    every deploy and every server test copied and compressed.

    Patterns as Django's: a file's name or its path under the static root.
    """

    ignore_patterns = [
        *BaseStaticFilesConfig.ignore_patterns,
        "drf_spectacular_sidecar/redoc/*",
        "drf_spectacular_sidecar/swagger-ui-dist/*.js.map",
    ]
