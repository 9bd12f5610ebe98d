"""Settings of the server processes the tests start (``tests/server.py``): the test settings
(``townsquare.settings_test``, the real settings with a fixed key) with a fast password hasher.

PBKDF2 costs ~0.3 s of CPU per password checked, deliberately; the suite's servers check
several hundred (every ``POST /api/token/``, every sign-in form, every refused guess of the
lockout tests), which on a 2-core machine is most of a minute of the suite. The in-process tests
do the same (``conftest.py``). A server test that passes ``DJANGO_SETTINGS_MODULE`` runs the
module it names.
"""

from __future__ import annotations

from townsquare.settings_test import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
