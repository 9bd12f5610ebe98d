from chat.tests.conftest import Demo, demo  # noqa: F401  (the demo users, rooms and items)
