"""URL path converters shared by every app's ``urls.py`` and ``api_urls.py``."""

from __future__ import annotations

#: The largest primary key (``BigAutoField``: a signed 64-bit integer, SQLite's and
#: PostgreSQL's ``bigint``).
ID_MAX = 2**63 - 1


class IdConverter:
    """``<id:name>``: a database id, 1 to ``ID_MAX``, as an ``int``.

    Django's ``<int:>`` takes any run of digits, so ``/api/rooms/9223372036854775808/``
    reached the database and failed there (SQLite: ``OverflowError``, an HTML 500). Here a
    number outside ``1..ID_MAX`` matches no URL: 404, without a query. Registered as ``id``
    in ``townsquare/urls.py`` (Django docs, "Registering custom path converters": raising
    ``ValueError`` in ``to_python`` means no match).
    """

    # 19 digits hold ID_MAX; longer runs fail the match before any conversion.
    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= ID_MAX:
            raise ValueError(f"id out of range: {value}")
        return number

    def to_url(self, value: int) -> str:
        return str(value)
