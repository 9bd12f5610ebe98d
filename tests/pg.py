"""Scratch PostgreSQL databases and Redis key prefixes for tests that need the real services."""

from __future__ import annotations

import atexit
import contextlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from tests.services import need, port_open

PG_HOST = os.environ.get("TOWNSQUARE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TOWNSQUARE_TEST_PG_PORT", "5432"))
REDIS_HOST = os.environ.get("TOWNSQUARE_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TOWNSQUARE_TEST_REDIS_PORT", "6379"))


def _admin_connection() -> tuple[psycopg.Connection[Any], str]:
    last: Exception | None = None
    for user in ("postgres", "root"):
        try:
            return psycopg.connect(
                host=PG_HOST, port=PG_PORT, user=user, dbname="postgres", autocommit=True
            ), user
        except psycopg.Error as exc:
            last = exc
    raise RuntimeError(f"cannot connect to PostgreSQL at {PG_HOST}:{PG_PORT}: {last}")


@contextmanager
def scratch_postgres() -> Iterator[str]:
    """Create a database of our own; yield its URL; drop it (and only it) afterwards."""
    need(port_open(PG_HOST, PG_PORT), f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}")
    admin, user = _admin_connection()
    name = f"townsquare_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def create_template() -> str:
    """Create a database for ``copy_of_template`` to copy (``townsquare_test_…``); return its
    URL. Dropped when this process exits; the caller fills it, then leaves it unconnected."""
    admin, user = _admin_connection()
    name = f"townsquare_test_tpl_{uuid.uuid4().hex[:12]}"
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()
    atexit.register(_drop, name)
    return f"postgres://{user}@{PG_HOST}:{PG_PORT}/{name}"


def _drop(name: str) -> None:
    try:
        admin, _ = _admin_connection()
    except RuntimeError:
        return
    with contextlib.closing(admin):
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def copy_of_template(database_url: str, template_url: str) -> bool:
    """Make the scratch database at ``database_url`` a copy of the one at ``template_url``
    (dropped and created again under its name, ``CREATE DATABASE … TEMPLATE``: a fraction of a
    second, where migrating and loading the demo data costs two Django start-ups).

    Returns False, and leaves the database empty, when it is not an empty scratch database
    (``townsquare_test_…`` without a table) or cannot be copied now (a connection to either).
    """
    name = database_url.rsplit("/", 1)[1]
    template = template_url.rsplit("/", 1)[1]
    if not name.startswith("townsquare_test_"):
        return False
    admin, user = _admin_connection()
    with contextlib.closing(admin):
        try:
            with psycopg.connect(
                host=PG_HOST, port=PG_PORT, user=user, dbname=name, autocommit=True
            ) as db:
                row = db.execute(
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = 'public'"
                ).fetchone()
            if row is None or row[0] != 0:
                return False
            admin.execute(f'DROP DATABASE "{name}"')
        except psycopg.Error:
            return False
        try:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            return True
        except psycopg.Error:
            admin.execute(f'CREATE DATABASE "{name}"')
            return False


@contextmanager
def scratch_redis() -> Iterator[tuple[str, str]]:
    """Yield ``(REDIS_URL, key prefix)``; delete only the keys under that prefix afterwards."""
    need(port_open(REDIS_HOST, REDIS_PORT), f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}")
    prefix = f"townsquare-test-{uuid.uuid4().hex[:12]}"
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
    try:
        yield url, prefix
    finally:
        import redis

        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@contextmanager
def connections_refused(database_url: str) -> Iterator[None]:
    """Make a scratch database unreachable until exit: refuse new connections and end the
    open ones (``ALLOW_CONNECTIONS false`` + ``pg_terminate_backend``), then allow them again.

    Only databases made by ``scratch_postgres`` (``townsquare_test_…``) are touched.
    """
    name = database_url.rsplit("/", 1)[1]
    if not name.startswith("townsquare_test_"):
        raise ValueError(f"not a scratch database: {name}")
    admin, _ = _admin_connection()
    try:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        yield
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
