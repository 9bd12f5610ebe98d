"""The dashboard: counters after each kind of event, conflation, the feed ticker, ws/test/."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone
from rest_framework.test import APIClient

from chat import services as chat_services
from chat.models import Message, Room
from chat.tests.conftest import Demo
from dashboard import services
from dashboard.models import FeedRecord, FeedSwitch
from dashboard.publisher import run_dashboard_publisher
from dashboard.receivers import DIRTY_STREAM
from dashboard.snapshot import build_snapshot
from realtime import publish, worker_stats
from realtime.frames import Frame
from realtime.hub import Listener, get_hub
from realtime.publish import apublish
from realtime.tests.conftest import communicator, receive, send, session_cookie
from realtime.tokens import issue_token
from shop import services as shop_services
from shop.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_worker_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    worker_stats.set_store(worker_stats.MemoryStore())
    monkeypatch.setattr(worker_stats, "local", worker_stats.LocalStats())
    monkeypatch.setattr(publish, "counts", publish.EventCounts())
    yield
    worker_stats.set_store(None)


async def test_counters_follow_each_kind_of_event(demo: Demo) -> None:
    before = await build_snapshot()
    assert before["series"]["seconds"] == 300
    assert len(before["series"]["messages"]) == len(before["series"]["events"]) == 300

    await database_sync_to_async(chat_services.message_create)(
        user=demo.alice, room_id=demo.lobby.pk, text="hi"
    )
    after_message = await build_snapshot()
    assert after_message["messages"]["last_hour"] == before["messages"]["last_hour"] + 1
    assert after_message["messages"]["last_minute"] == before["messages"]["last_minute"] + 1
    assert sum(after_message["series"]["messages"]) == sum(before["series"]["messages"]) + 1
    assert after_message["series"]["messages"][-1] + after_message["series"]["messages"][-2] >= 1

    moka = await database_sync_to_async(Item.objects.get)(name="Moka pot")
    await database_sync_to_async(shop_services.purchase_create)(
        user=demo.dave, item_id=moka.pk, quantity=10
    )
    after_purchase = await build_snapshot()
    assert after_purchase["purchases_last_minute"] == before["purchases_last_minute"] + 1
    assert after_purchase["units_in_stock"] == before["units_in_stock"] - 10
    assert after_purchase["items_in_stock"] == before["items_in_stock"] - 1  # sold out

    await database_sync_to_async(chat_services.room_create)(user=demo.alice, name="new-room")
    assert (await build_snapshot())["rooms"] == before["rooms"] + 1

    await database_sync_to_async(services.feed_switch_set)(on=True, actor=None)
    assert await database_sync_to_async(services.feed_tick)(interval=2.0) == 1
    feed = (await build_snapshot())["feed"]
    assert feed == {"on": True, "records": 1}

    # A socket opens: the worker's numbers reach the store, the snapshot counts it.
    comm = communicator(cookie=await database_sync_to_async(session_cookie)(demo.bob))
    assert (await comm.connect())[0]
    store = worker_stats.get_store()
    await store.put("w1", worker_stats.local.snapshot(), {})
    snapshot = await build_snapshot()
    assert snapshot["sockets"] == {"total": 1, "workers": {"w1": 1}}
    assert snapshot["users_online"] == 1
    await comm.disconnect()
    await store.put("w1", worker_stats.local.snapshot(), {})
    assert (await build_snapshot())["sockets"]["total"] == 0


async def test_workers_add_up_and_silent_ones_drop_out() -> None:
    store = worker_stats.get_store()
    now = time.time()
    await store.put("a", {"sockets": 3, "users": [1, 2], "at": now}, {int(now): 5})
    await store.put("b", {"sockets": 4, "users": [2, 3], "at": now}, {int(now): 2})
    await store.put("dead", {"sockets": 9, "users": [9], "at": now - 60}, {})
    deployment = await worker_stats.deployment()
    assert deployment == {"sockets": {"total": 7, "workers": {"a": 3, "b": 4}}, "users_online": 3}
    assert (await store.event_series(int(now), 1)) == [7]


@pytest.mark.serial  # a quiet 0.6 s after the last frame: run alone (./test)
async def test_a_burst_is_conflated_and_the_last_frame_has_the_final_values(
    demo: Demo, settings: Any
) -> None:
    dashboard = {"MAX_UPDATES_PER_SECOND": 4}
    settings.TOWNSQUARE_REALTIME = {**settings.TOWNSQUARE_REALTIME, "dashboard": dashboard}
    comm = communicator(cookie=await database_sync_to_async(session_cookie)(demo.alice))
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": "dashboard"})
    assert (await receive(comm))["type"] == "ack"
    first = await receive(comm)
    assert first["event"] == "dashboard.update"
    base = first["data"]["messages"]["last_hour"]
    publisher = asyncio.create_task(run_dashboard_publisher())
    try:
        started = time.monotonic()

        def write(batch: int) -> None:
            last = Room.objects.get(pk=demo.lobby.pk).last_offset
            Message.objects.bulk_create(
                Message(room=demo.lobby, author=demo.bob, text=f"{batch}.{i}", offset=last + i + 1)
                for i in range(100)
            )
            Room.objects.filter(pk=demo.lobby.pk).update(last_offset=last + 100)

        for batch in range(10):  # 1,000 messages, 1,000 "something changed" events
            await database_sync_to_async(write)(batch)
            for _ in range(100):
                await apublish(DIRTY_STREAM, "dashboard.dirty", {})
        frames = []
        while True:  # until a frame shows every message, then a quiet second
            frame = await receive(comm, timeout=5)
            if frame["event"].startswith("presence."):  # alice's own arrival
                continue
            frames.append(frame)
            if frame["data"]["messages"]["last_hour"] == base + 1000:
                break
        elapsed = time.monotonic() - started
        assert await comm.receive_nothing(timeout=0.6)
    finally:
        publisher.cancel()
        await comm.disconnect()
    assert all(f["event"] == "dashboard.update" for f in frames)
    assert len(frames) <= 4 * elapsed + 2, (len(frames), elapsed)
    assert len(frames) < 50
    assert frames[-1]["data"]["messages"]["last_hour"] == base + 1000


async def test_dashboard_stream_is_for_signed_in_users() -> None:
    comm = communicator()
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": "dashboard"})
    assert (await receive(comm))["code"] == "unauthenticated"
    await comm.disconnect()


def test_feed_ticks_only_while_on_and_once_per_interval(demo: Demo) -> None:
    assert services.feed_tick(interval=2.0) is None  # no switch yet: off
    services.feed_switch_set(on=True, actor=None)
    assert services.feed_tick(interval=2.0) == 1
    assert services.feed_tick(interval=2.0) is None  # same interval: fenced
    FeedSwitch.objects.filter(pk=1).update(last_tick_at=timezone.now() - timedelta(seconds=3))
    assert services.feed_tick(interval=2.0) == 2
    services.feed_switch_set(on=False, actor=None)
    FeedSwitch.objects.filter(pk=1).update(last_tick_at=None)
    assert services.feed_tick(interval=2.0) is None
    assert FeedRecord.objects.count() == 2


async def test_two_tickers_racing_add_one_record_per_interval(demo: Demo) -> None:
    await database_sync_to_async(services.feed_switch_set)(on=True, actor=None)
    tick = database_sync_to_async(services.feed_tick)
    results = []
    for _ in range(3):
        results += await asyncio.gather(*(tick(interval=60.0) for _ in range(4)))
    assert [r for r in results if r is not None] == [1]
    assert await database_sync_to_async(FeedRecord.objects.count)() == 1


async def test_seed_000_ws_test_sends_the_count_on_connect_and_on_change(demo: Demo) -> None:
    await database_sync_to_async(services.feed_switch_set)(on=True, actor=None)
    comm = communicator("/ws/test/")
    assert (await comm.connect())[0]
    assert await receive(comm) == {"value": 0}
    await database_sync_to_async(services.feed_tick)(interval=2.0)
    assert await receive(comm) == {"value": 1}
    # Switch flips are not part of the seed's protocol.
    await database_sync_to_async(services.feed_switch_set)(on=False, actor=None)
    assert await comm.receive_nothing(timeout=0.1)
    await comm.send_json_to({"hello": 1})
    assert (await receive(comm))["code"] == "invalid"
    await comm.disconnect()


def test_feed_switch_api_is_staff_only(demo: Demo) -> None:
    def client(user: Any) -> APIClient:
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(user)[0]}")
        return c

    assert client(demo.bob).get("/api/feed/").json() == {"on": False, "records": 0}
    assert client(demo.bob).post("/api/feed/", {"on": True}, format="json").status_code == 403
    response = client(demo.alice).post("/api/feed/", {"on": True}, format="json")
    assert (response.status_code, response.json()) == (200, {"on": True, "records": 0})
    assert client(demo.alice).post("/api/feed/", {"on": "maybe"}, format="json").status_code == 400
    assert APIClient().get("/api/feed/").status_code in (401, 403)


def test_dashboard_page_needs_sign_in(client: Any, demo: Demo) -> None:
    assert client.get("/dashboard/").status_code == 302
    client.force_login(demo.bob)
    assert client.get("/dashboard/").status_code == 200


async def test_published_events_are_counted_per_second_but_internal_signals_are_not() -> None:
    stock = {"item": 1, "name": "x", "quantity": 1, "version": 9}
    await apublish("shop:item:1", "shop.stock", stock)
    await apublish("chat:room:1", "chat.member_left", {"user": {"id": 1, "username": "x"}})
    await apublish(DIRTY_STREAM, "dashboard.dirty", {})
    await apublish(worker_stats.WORKERS_STREAM, "workers.changed", {"worker": "w"})
    assert publish.counts.total() == 2
    store = worker_stats.get_store()
    await store.put("w", worker_stats.local.snapshot(), publish.counts.take())
    now = int(time.time())
    assert sum(await store.event_series(now - 5, 10)) == 2


async def test_the_publisher_computes_nothing_while_nobody_watches(
    demo: Demo, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dashboard = {"MAX_UPDATES_PER_SECOND": 20}
    settings.TOWNSQUARE_REALTIME = {**settings.TOWNSQUARE_REALTIME, "dashboard": dashboard}
    computed = asyncio.Event()
    builds: list[float] = []

    async def counting_build() -> dict[str, Any]:
        builds.append(time.monotonic())
        computed.set()
        return await build_snapshot()

    monkeypatch.setattr("dashboard.publisher.build_snapshot", counting_build)
    publisher = asyncio.create_task(run_dashboard_publisher())
    try:
        for _ in range(20):  # 20 "something changed" signals, nobody subscribed
            await apublish(DIRTY_STREAM, "dashboard.dirty", {})
        await asyncio.sleep(1.2)  # past the publisher's once-a-second wake-up
        assert builds == []
        comm = communicator(cookie=await database_sync_to_async(session_cookie)(demo.alice))
        assert (await comm.connect())[0]
        await send(comm, {"type": "subscribe", "stream": "dashboard"})
        assert (await receive(comm))["type"] == "ack"
        await apublish(DIRTY_STREAM, "dashboard.dirty", {})
        await asyncio.wait_for(computed.wait(), 3)  # someone watches: computed again
        assert len(builds) >= 1
        await comm.disconnect()
    finally:
        publisher.cancel()


async def test_a_message_written_by_the_service_wakes_the_dashboard_without_a_model_signal(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Messages are stored with bulk_create, which sends no post_save: what wakes the leader's
    # publisher is the chat.message publish itself, counted, flushed to the store and
    # announced as workers.changed on sys:workers (one of the two streams it listens to).
    heard: dict[str, list[str]] = {worker_stats.WORKERS_STREAM: [], DIRTY_STREAM: []}
    arrived = asyncio.Event()

    class Heard(Listener):
        def deliver(self, frame: Frame) -> None:
            heard[frame.stream].append(frame.text)
            arrived.set()

    listener = Heard()
    hub = get_hub()
    for stream in heard:
        await hub.subscribe(stream, listener)
    flusher = asyncio.create_task(worker_stats.run_flusher())
    try:
        await asyncio.sleep(0)  # the flusher starts listening before the first publish
        assert publish.counts.changed is not None
        await database_sync_to_async(chat_services.message_create)(
            user=demo.alice, room_id=demo.lobby.pk, text="counted"
        )
        await asyncio.wait_for(arrived.wait(), 5)
    finally:
        flusher.cancel()
        for stream in heard:
            await hub.unsubscribe(stream, listener)
    assert heard[DIRTY_STREAM] == []
    assert len(heard[worker_stats.WORKERS_STREAM]) == 1
    assert '"event":"workers.changed"' in heard[worker_stats.WORKERS_STREAM][0]
    now = int(time.time())
    assert sum(await worker_stats.get_store().event_series(now - 5, 10)) == 1
