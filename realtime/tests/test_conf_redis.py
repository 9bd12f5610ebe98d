"""The deployment's Redis topology: REDIS_URL with one or several URLs (the channel layer's
shards), or Sentinel (REDIS_SENTINELS + REDIS_SENTINEL_MASTER); what settings.py builds from
it; and the Sentinel-aware clients of ``realtime.conf``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from realtime.conf import (
    RedisTopology,
    SentinelCachePool,
    async_redis,
    parse_sentinel_url,
    redis_location,
    redis_topology,
    sentinel_url,
)

ROOT = Path(__file__).resolve().parents[2]


def test_nothing_set_is_no_redis() -> None:
    assert redis_topology(None) is None
    assert redis_topology("", "", "") is None
    assert redis_topology("  ") is None


def test_one_url_is_one_shard_and_the_designated_instance() -> None:
    topology = redis_topology("redis://10.0.0.1:6379/0")
    assert topology == RedisTopology(urls=("redis://10.0.0.1:6379/0",))
    assert topology.url == "redis://10.0.0.1:6379/0"
    assert topology.shards == 1
    assert topology.layer_hosts(socket_timeout=1.0) == [
        {"address": "redis://10.0.0.1:6379/0", "socket_timeout": 1.0}
    ]


def test_several_urls_are_shards_in_order_and_the_first_is_designated() -> None:
    topology = redis_topology(" redis://a:6379/0, rediss://b:6380/1 ,unix:///run/r.sock ")
    assert topology is not None
    assert topology.urls == ("redis://a:6379/0", "rediss://b:6380/1", "unix:///run/r.sock")
    assert topology.url == "redis://a:6379/0"
    assert topology.shards == 3
    hosts = topology.layer_hosts(socket_connect_timeout=0.5)
    assert [h["address"] for h in hosts] == list(topology.urls)
    assert all(h["socket_connect_timeout"] == 0.5 for h in hosts)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://a:6379/0,", "an empty item"),
        ("redis://a:6379/0,,redis://b:6379/0", "an empty item"),
        ("redis://a:6379/0,redis://a:6379/0", "given twice"),
        ("http://a:6379/0", "is not a redis://"),
        ("a:6379", "is not a redis://"),
        ("redis://a/0,memcached://b", "is not a redis://"),
    ],
)
def test_a_bad_redis_url_list_is_refused(url: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        redis_topology(url)


def test_sentinels_and_a_master_name_give_sentinel_hosts() -> None:
    topology = redis_topology(None, "10.0.0.1:26379, 10.0.0.2:26380,[::1]:26381", "main")
    assert topology is not None
    assert topology.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26381))
    assert topology.masters == ("main",)
    assert topology.shards == 1
    # channels_redis's Sentinel host dict (channels_redis.utils.create_pool): sentinels,
    # master_name, sentinel_kwargs; the socket timeouts bound calls to the sentinels too.
    assert topology.layer_hosts(socket_timeout=1.0, health_check_interval=5) == [
        {
            "sentinels": [["10.0.0.1", 26379], ["10.0.0.2", 26380], ["::1", 26381]],
            "master_name": "main",
            "sentinel_kwargs": {"socket_timeout": 1.0},
            "socket_timeout": 1.0,
            "health_check_interval": 5,
        }
    ]
    assert topology.url == "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,[::1]:26381/main/0"


def test_several_master_names_shard_the_layer_over_their_masters() -> None:
    topology = redis_topology("", "s:26379", "one,two")
    assert topology is not None
    assert [h["master_name"] for h in topology.layer_hosts()] == ["one", "two"]
    assert topology.url == "redis+sentinel://s:26379/one/0"


@pytest.mark.parametrize(
    ("url", "sentinels", "master", "message"),
    [
        ("redis://a/0", "s:26379", "main", "not both"),
        (None, "s:26379", None, "needs REDIS_SENTINEL_MASTER"),
        (None, "s:26379", " ", "needs REDIS_SENTINEL_MASTER"),
        (None, None, "main", "needs REDIS_SENTINELS"),
        (None, "s", "main", "not host:port"),
        (None, "s:", "main", "not host:port"),
        (None, ":26379", "main", "not host:port"),
        (None, "s:port", "main", "not host:port"),
        (None, "s:0", "main", "no valid port"),
        (None, "s:70000", "main", "no valid port"),
        (None, "s:26379,s:26379", "main", "given twice"),
        (None, "s:26379", "a,,b", "an empty item"),
    ],
)
def test_bad_sentinel_settings_are_refused(
    url: str | None, sentinels: str | None, master: str | None, message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        redis_topology(url, sentinels, master)


def test_a_sentinel_url_round_trips() -> None:
    url = sentinel_url([("h1", 1), ("::1", 2)], "main", 3)
    assert url == "redis+sentinel://h1:1,[::1]:2/main/3"
    assert parse_sentinel_url(url) == ([("h1", 1), ("::1", 2)], "main", 3)
    assert parse_sentinel_url("redis+sentinel://h:5/m") == ([("h", 5)], "m", 0)


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:5/m/0",
        "redis+sentinel:///m/0",
        "redis+sentinel://h:5/",
        "redis+sentinel://h:5/m/x",
        "redis+sentinel://h/m/0",
        "redis+sentinel://h:5,,h:6/m/0",
    ],
)
def test_a_malformed_sentinel_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_sentinel_url(url)


def test_async_redis_follows_the_master_through_sentinel() -> None:
    from redis.asyncio.sentinel import SentinelConnectionPool

    with override_settings(TOWNSQUARE_REALTIME={"REDIS_TIMEOUT_SECONDS": 0.7}):
        client = async_redis("redis+sentinel://127.0.0.1:9,127.0.0.1:10/main/2")
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "main"
    assert pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["socket_timeout"] == 0.7
    assert pool.connection_kwargs["socket_connect_timeout"] == 0.7
    assert pool.connection_kwargs["retry"].get_retries() == 1
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [9, 10]
    # A sentinel that hangs must not hold a caller forever either.
    assert all(s.connection_pool.connection_kwargs["socket_timeout"] == 0.7 for s in sentinels)


def test_async_redis_on_a_plain_url_connects_to_it() -> None:
    client = async_redis("redis://127.0.0.1:9/4")
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 9, 4)
    assert kwargs["retry"].get_retries() == 1


def test_the_cache_pool_follows_the_master_through_sentinel() -> None:
    from redis.sentinel import SentinelConnectionPool

    pool = SentinelCachePool.from_url(
        "redis+sentinel://127.0.0.1:9/main/0", socket_timeout=0.5, parser_class=None
    )
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "main"
    assert pool.connection_kwargs["socket_timeout"] == 0.5
    sentinel = pool.sentinel_manager.sentinels[0]
    assert sentinel.connection_pool.connection_kwargs["socket_timeout"] == 0.5
    with pytest.raises(ValueError):
        SentinelCachePool.from_url("redis://127.0.0.1:9/0")


def test_the_stores_use_the_designated_instance() -> None:
    with override_settings(REDIS_URL="redis+sentinel://s:1/main/0"):
        assert redis_location() == ("redis+sentinel://s:1/main/0", "townsquare")


# --- What settings.py builds ---------------------------------------------------------------


def settings_in_subprocess(tmp_path: Path, **environ: str) -> dict[str, Any]:
    """``townsquare.settings`` in a fresh Python with a clean environment plus ``environ``:
    its ``REDIS_URL``, channel layer and cache, as JSON."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="townsquare.settings",
        SECRET_KEY="a-subprocess-key-for-settings-tests-0123456789abcdefghijklmnop",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **environ,
    )
    script = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps({
    "url": settings.REDIS_URL,
    "layer": settings.CHANNEL_LAYERS["default"],
    "cache": settings.CACHES["default"],
}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        return {"error": done.stderr}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("layer", ["pubsub", "core"])
def test_settings_shard_either_layer_over_every_url(tmp_path: Path, layer: str) -> None:
    seen = settings_in_subprocess(
        tmp_path,
        CHANNEL_LAYER=layer,
        REDIS_URL="redis://127.0.0.1:7001/0,redis://127.0.0.1:7002/0",
        REDIS_TIMEOUT_SECONDS="0.5",
    )
    hosts = seen["layer"]["CONFIG"]["hosts"]
    assert [h["address"] for h in hosts] == ["redis://127.0.0.1:7001/0", "redis://127.0.0.1:7002/0"]
    assert all(h["socket_connect_timeout"] == 0.5 for h in hosts)
    # The stores and the cache: the first shard alone.
    assert seen["url"] == "redis://127.0.0.1:7001/0"
    assert seen["cache"]["LOCATION"] == ["redis://127.0.0.1:7001/0"]
    assert "pool_class" not in seen["cache"]["OPTIONS"]


def test_settings_reach_redis_through_sentinel(tmp_path: Path) -> None:
    seen = settings_in_subprocess(
        tmp_path, REDIS_SENTINELS="127.0.0.1:26379,127.0.0.1:26380", REDIS_SENTINEL_MASTER="ts"
    )
    assert seen["layer"]["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    (host,) = seen["layer"]["CONFIG"]["hosts"]
    assert host["master_name"] == "ts"
    assert host["sentinels"] == [["127.0.0.1", 26379], ["127.0.0.1", 26380]]
    assert host["sentinel_kwargs"] == {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}
    assert seen["url"] == "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/ts/0"
    assert seen["cache"]["LOCATION"] == [seen["url"]]
    assert seen["cache"]["OPTIONS"]["pool_class"] == "realtime.conf.SentinelCachePool"


def test_settings_refuse_a_half_configured_sentinel(tmp_path: Path) -> None:
    seen = settings_in_subprocess(tmp_path, REDIS_SENTINELS="127.0.0.1:26379")
    assert "REDIS_SENTINELS needs REDIS_SENTINEL_MASTER" in seen["error"]


def test_settings_without_redis_keep_one_process_in_memory(tmp_path: Path) -> None:
    seen = settings_in_subprocess(tmp_path)
    assert seen["url"] is None
    assert seen["layer"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
