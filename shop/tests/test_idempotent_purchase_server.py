"""Two purchases with one ``Idempotency-Key`` at once, on a real server and PostgreSQL: one
buys (201), the other is told the first is in flight (409), and a later retry gets the 201.

Deterministic, without sleeps as synchronization: the test holds the item's row lock from a
connection of its own, so the first request waits inside its write with its key committed
``in_flight``; the second arrives then. Then the lock is released and the first completes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import token_for
from tests.pg import scratch_postgres
from tests.server import Server, run_server

pytestmark = pytest.mark.server

KEY = "8e03978e-40d5-43e8-bc93-6894a57f9324"


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    workdir: Path = tmp_path_factory.mktemp("idempotent-purchase")
    with (
        scratch_postgres() as database_url,
        run_server(workdir, DATABASE_URL=database_url) as server,
    ):
        yield server, database_url


def wait_for(condition: Any, what: str, seconds: float = 10.0) -> None:
    """Poll a database condition until it holds (bounded)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_concurrent_retry_is_409_and_the_item_is_bought_once(
    pg_server: tuple[Server, str],
) -> None:
    server, database_url = pg_server
    headers = {"Authorization": f"Bearer {token_for(server, 'bob')}", "Idempotency-Key": KEY}
    items = httpx.get(f"{server.http}/api/items/").json()
    item = next(i for i in items if i["name"] == "Moka pot")
    url = f"{server.http}/api/items/{item['id']}/purchase/"
    answers: dict[str, httpx.Response] = {}

    with (
        psycopg.connect(database_url) as locker,
        psycopg.connect(database_url, autocommit=True) as watcher,
    ):

        def key_state() -> str | None:
            row = watcher.execute(
                "SELECT state FROM realtime_idempotencykey WHERE key = %s", (KEY,)
            ).fetchone()
            return None if row is None else str(row[0])

        def first_waits_on_the_lock() -> bool:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE \"shop_item\"%%'"
            ).fetchone()
            return row is not None and int(row[0]) == 1

        locker.execute("SELECT id FROM shop_item WHERE id = %s FOR UPDATE", (item["id"],))

        def first() -> None:
            answers["first"] = httpx.post(url, json={"quantity": 1}, headers=headers, timeout=20)

        thread = threading.Thread(target=first)
        thread.start()
        try:
            wait_for(first_waits_on_the_lock, "the first purchase to wait on the item's lock")
            assert key_state() == "in_flight"
            second = httpx.post(url, json={"quantity": 1}, headers=headers, timeout=10)
        finally:
            locker.rollback()  # release the item: the first purchase goes on
            thread.join(timeout=20)
        assert not thread.is_alive()

        assert second.status_code == 409, second.text
        assert second.json()["code"] == "idempotency_key_in_flight"
        first_answer = answers["first"]
        assert first_answer.status_code == 201, first_answer.text
        assert "Idempotent-Replayed" not in first_answer.headers
        assert first_answer.json()["remaining"] == item["quantity"] - 1
        assert key_state() == "done"

        later = httpx.post(url, json={"quantity": 1}, headers=headers, timeout=10)
        assert later.status_code == 201
        assert later.content == first_answer.content
        assert later.headers["Idempotent-Replayed"] == "true"

        purchases = watcher.execute(
            "SELECT count(*) FROM shop_purchase WHERE item_id = %s", (item["id"],)
        ).fetchone()
        stock = watcher.execute(
            "SELECT quantity FROM shop_item WHERE id = %s", (item["id"],)
        ).fetchone()
        assert purchases is not None and purchases[0] == 1
        assert stock is not None and stock[0] == item["quantity"] - 1
