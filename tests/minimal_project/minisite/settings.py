"""Settings of the minimal project: Django's auth, Channels, the real-time core and one app.

The database file comes from ``MINISITE_DATABASE`` (the tests give each run its own), the key
from ``SECRET_KEY``. Nothing else is read from the environment.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ["SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
    "realtime",
    "board",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "minisite.urls"
ASGI_APPLICATION = "minisite.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("MINISITE_DATABASE", BASE_DIR / "db.sqlite3"),
        # Writers queue at BEGIN instead of failing with "database is locked".
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# One process: the in-memory layer. Several workers need channels_redis (docs/using-realtime.md).
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# Read by the core without a default (realtime.conf): None = one process.
REDIS_URL = None
