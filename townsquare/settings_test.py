"""Settings of the test suite and the type checker (pytest-django, django-stubs).

``townsquare.settings`` refuses to load without a ``SECRET_KEY`` while ``DEBUG`` is off. The
in-process tests and mypy's Django plugin sign nothing that leaves the process, so they get a
fixed key here when the environment has none; everything else is the real settings. Servers
that tests start pass a key of their own (``tests/server.py``), and tests of the refusal itself
run ``townsquare.settings`` in a subprocess without one (``tests/test_settings_deploy.py``).

Setting it in ``os.environ`` (not only here) lets pytest-django and django-stubs import the
real settings module unchanged; processes the tests start inherit it.
"""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "in-process-tests-only-townsquare-key-0123456789abcdefghijkl")

from townsquare.settings import *  # noqa: F403
