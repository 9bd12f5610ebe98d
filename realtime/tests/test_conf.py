"""``realtime.conf``: one settings object, defaults written once, unknown keys and wrong types
refused, the environment's overrides, the apps' sections, and backends by dotted path."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from dashboard import services as dashboard_services
from dashboard.conf import DashboardSettings
from dashboard.ticker import run_feed_ticker
from realtime import presence, worker_stats
from realtime.conf import (
    RealtimeSettings,
    backend_class,
    from_environ,
    redis_timeout,
    rt_settings,
)
from realtime.lease import LocalLease, RedisLease, get_lease

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = (RealtimeSettings, DashboardSettings)


def rt(**given: Any) -> Any:
    """``override_settings`` with exactly ``given`` as ``TOWNSQUARE_REALTIME``."""
    return override_settings(TOWNSQUARE_REALTIME=given)


def errors_of(prefix: str) -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks() if m.id and m.id.startswith(prefix)]


def env_names(cls: type[Any]) -> set[str]:
    prefix = getattr(cls, "ENV_PREFIX", "")
    return {f.metadata.get("env", prefix + f.name) for f in fields(cls)}


# --- Defaults, written once ------------------------------------------------------------------


def settings_in_subprocess(tmp_path: Path, **environ: str) -> dict[str, Any]:
    """``townsquare.settings`` (not the tests' module) in a fresh Python with a clean
    environment plus ``environ``: its ``TOWNSQUARE_REALTIME``, what ``rt_settings()`` reads
    from it, and the Redis timeouts it gave the channel layer."""
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
from dataclasses import asdict
from realtime.conf import rt_settings
from dashboard.conf import DashboardSettings
hosts = settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("hosts", [{}])
print(json.dumps({
    "given": settings.TOWNSQUARE_REALTIME,
    "core": asdict(rt_settings()),
    "dashboard": asdict(rt_settings().section(DashboardSettings)),
    "layer_timeout": hosts[0].get("socket_timeout"),
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
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_settings_py_passes_only_what_the_environment_sets(tmp_path: Path) -> None:
    seen = settings_in_subprocess(tmp_path)
    assert seen["given"] == {"dashboard": {}}
    assert seen["core"]["MAX_FRAME_BYTES"] == RealtimeSettings.MAX_FRAME_BYTES == 65536
    assert seen["dashboard"]["MAX_UPDATES_PER_SECOND"] == 2.0


def test_every_environment_variable_overrides_its_setting(tmp_path: Path) -> None:
    seen = settings_in_subprocess(
        tmp_path,
        RT_MAX_FRAME_BYTES="1234",
        RT_FRAMES_PER_SECOND="7.5",
        RT_BACKGROUND_AUTOSTART="off",
        RT_MAX_PIPELINED="8",
        RT_PRESENCE_BACKEND="realtime.presence.MemoryStore",
        REDIS_TIMEOUT_SECONDS="0.5",
        PUBLISH_API_KEY="secret-key",
        DASHBOARD_MAX_UPDATES_PER_SECOND="5",
        FEED_INTERVAL_SECONDS="3",
        REDIS_URL="redis://127.0.0.1:9/0",
    )
    assert seen["given"] == {
        "MAX_FRAME_BYTES": 1234,
        "FRAMES_PER_SECOND": 7.5,
        "BACKGROUND_AUTOSTART": False,
        "MAX_PIPELINED": 8,
        "PRESENCE_BACKEND": "realtime.presence.MemoryStore",
        "REDIS_TIMEOUT_SECONDS": 0.5,
        "PUBLISH_API_KEY": "secret-key",
        "dashboard": {"MAX_UPDATES_PER_SECOND": 5.0, "FEED_INTERVAL_SECONDS": 3.0},
    }
    assert seen["core"]["MAX_FRAME_BYTES"] == 1234
    assert seen["core"]["BACKGROUND_AUTOSTART"] is False
    assert seen["core"]["REDIS_TIMEOUT_SECONDS"] == 0.5
    assert seen["core"]["PUBLISH_API_KEY"] == "secret-key"
    assert seen["core"]["REPLAY_MAX"] == RealtimeSettings.REPLAY_MAX  # untouched: the default
    assert seen["dashboard"] == {"MAX_UPDATES_PER_SECOND": 5.0, "FEED_INTERVAL_SECONDS": 3.0}
    # The channel layer waits on Redis as long as the core does.
    assert seen["layer_timeout"] == 0.5


def test_settings_py_writes_no_default_nor_name_of_a_real_time_setting() -> None:
    # Every default lives in the dataclasses: townsquare/settings.py may not repeat a setting
    # or variable name as a string (which is how a second default would be written).
    tree = ast.parse((ROOT / "townsquare" / "settings.py").read_text())
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    names = {f.name for cls in SECTIONS for f in fields(cls)}
    variables = set().union(*(env_names(cls) for cls in SECTIONS))
    assert strings & (names | variables) == set()


def test_no_real_time_setting_is_read_around_the_object() -> None:
    names = {f.name for cls in SECTIONS for f in fields(cls)} | set().union(
        *(env_names(cls) for cls in SECTIONS)
    )
    read = re.compile(r"""\bsettings\.([A-Z_]+)|getattr\(settings,\s*["']([A-Z_]+)""")
    found = []
    for app in ("realtime", "chat", "shop", "notifications", "dashboard"):
        for path in (ROOT / app).rglob("*.py"):
            if "tests" in path.parts:
                continue
            for match in read.finditer(path.read_text()):
                if (match.group(1) or match.group(2)) in names:
                    found.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert found == []


def test_the_limits_table_of_protocol_md_gives_each_setting_its_variable_and_default() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text()
    table = text.split("\n## Limits\n", 1)[1].split("\n\n| setting |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `([A-Z_]+)` \| `([A-Z_]+)` \| ([0-9.]+)", table, re.MULTILINE)
    assert len(rows) >= 18
    defaults = {f.name: f.default for f in fields(RealtimeSettings)}
    for name, variable, default in rows:
        assert variable == f"RT_{name}"
        assert float(default) == defaults[name], name


# --- Unknown keys and wrong types ------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"MAX_FRAME_BYTE": 1000}, "'MAX_FRAME_BYTE']: no such setting"),
        ({"dashbord": {}}, "'dashbord']: no such setting"),
        ({"dashboard": {"MAX_UPDATES": 4}}, "['dashboard']['MAX_UPDATES']: no such setting"),
    ],
    ids=["core", "section-name", "section-key"],
)
def test_an_unknown_key_is_refused_at_first_read_and_by_the_check(
    given: dict[str, Any], words: str
) -> None:
    with override_settings(TOWNSQUARE_REALTIME=given):
        with pytest.raises(ImproperlyConfigured) as raised:
            rt_settings()
            rt_settings().section(DashboardSettings)
        assert words in str(raised.value)
        assert [(m.id, words in m.msg) for m in errors_of("realtime.")] == [
            ("realtime.E001", True)
        ]


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"MAX_FRAME_BYTES": "65536"}, "must be int, not str"),
        ({"MAX_FRAME_BYTES": 1.5}, "must be int, not float"),
        ({"FRAMES_PER_SECOND": True}, "must be float, not bool"),
        ({"BACKGROUND_AUTOSTART": 1}, "must be bool, not int"),
        ({"PRESENCE_BACKEND": None}, "must be str, not NoneType"),
        ({"dashboard": {"MAX_UPDATES_PER_SECOND": "4"}}, "must be float, not str"),
        ({"dashboard": 4}, "['dashboard'] must be a dict"),
    ],
)
def test_a_wrong_type_is_refused_at_first_read_and_by_the_check(
    given: dict[str, Any], words: str
) -> None:
    with override_settings(TOWNSQUARE_REALTIME=given):
        with pytest.raises(ImproperlyConfigured) as raised:
            rt_settings()
            rt_settings().section(DashboardSettings)
        assert words in str(raised.value)
        assert [(m.id, words in m.msg) for m in errors_of("realtime.")] == [
            ("realtime.E001", True)
        ]


def test_the_project_settings_pass_the_check_and_read_the_defaults() -> None:
    assert errors_of("realtime.") == []
    with rt():
        assert rt_settings() == RealtimeSettings()
        assert rt_settings().section(DashboardSettings) == DashboardSettings()


def test_an_int_is_a_float_setting_and_the_object_follows_changes() -> None:
    with rt(FRAMES_PER_SECOND=5, REDIS_TIMEOUT_SECONDS=2):
        frames = rt_settings().FRAMES_PER_SECOND
        assert (frames, type(frames)) == (5.0, float)
        assert redis_timeout() == 2.0
    assert rt_settings().FRAMES_PER_SECOND == RealtimeSettings.FRAMES_PER_SECOND


def test_the_publish_key_is_not_shown_by_repr() -> None:
    with rt(PUBLISH_API_KEY="do-not-print-me"):
        assert rt_settings().PUBLISH_API_KEY == "do-not-print-me"
        assert "do-not-print-me" not in repr(rt_settings())


# --- The environment ------------------------------------------------------------------------


def test_from_environ_reads_each_name_with_its_type() -> None:
    environ = {
        "RT_MAX_FRAME_BYTES": "1024",
        "RT_GAP_WAIT_SECONDS": "0.5",
        "RT_BACKGROUND_AUTOSTART": "Yes",
        "REDIS_TIMEOUT_SECONDS": "3",
        "PUBLISH_API_KEY": "",
        "MAX_FRAME_BYTES": "1",  # not a variable of ours: the core's are RT_<NAME>
        "DASHBOARD_MAX_UPDATES_PER_SECOND": "4",
        "FEED_INTERVAL_SECONDS": "0.5",
    }
    assert from_environ(RealtimeSettings, environ) == {
        "MAX_FRAME_BYTES": 1024,
        "GAP_WAIT_SECONDS": 0.5,
        "BACKGROUND_AUTOSTART": True,
        "REDIS_TIMEOUT_SECONDS": 3.0,
        "PUBLISH_API_KEY": "",
    }
    assert from_environ(DashboardSettings, environ) == {
        "MAX_UPDATES_PER_SECOND": 4.0,
        "FEED_INTERVAL_SECONDS": 0.5,
    }
    assert from_environ(RealtimeSettings, {}) == {}


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("RT_MAX_FRAME_BYTES", "64k"),
        ("RT_FRAMES_PER_SECOND", "fast"),
        ("RT_BACKGROUND_AUTOSTART", "maybe"),
        ("REDIS_TIMEOUT_SECONDS", ""),
    ],
)
def test_a_variable_that_does_not_parse_is_refused(variable: str, text: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"{variable}={text!r} must be"):
        from_environ(RealtimeSettings, {variable: text})


def test_a_variable_that_does_not_parse_stops_the_settings(tmp_path: Path) -> None:
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update(
        SECRET_KEY="a-subprocess-key-for-settings-tests-0123456789abcdefghijklmnop",
        RT_MAX_FRAME_BYTES="64KiB",
    )
    done = subprocess.run(
        [sys.executable, "-c", "import townsquare.settings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "ImproperlyConfigured: environment variable RT_MAX_FRAME_BYTES='64KiB'" in done.stderr


# --- The apps' settings ----------------------------------------------------------------------


# The ticker's database_sync_to_async checks the thread's connection (left by earlier tests).
@pytest.mark.django_db
async def test_the_feed_ticker_reads_its_interval_from_the_dashboard_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ticked: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def feed_tick(*, interval: float) -> None:
        ticked.get_loop().call_soon_threadsafe(ticked.set_result, interval)

    monkeypatch.setattr(dashboard_services, "feed_tick", feed_tick)
    with rt(dashboard={"FEED_INTERVAL_SECONDS": 0.01}):
        ticker = asyncio.create_task(run_feed_ticker())
        try:
            waits: set[asyncio.Future[Any]] = {ticked, ticker}
            await asyncio.wait(waits, timeout=5, return_when=asyncio.FIRST_COMPLETED)
            assert ticked.done(), ticker  # a ticker that failed shows its exception here
            assert ticked.result() == 0.01
        finally:
            ticker.cancel()


# --- Backends by dotted path -----------------------------------------------------------------


class FakeLease:
    """A lease backend of the tests' own, to show any importable class is accepted."""

    def __init__(self, name: str, ttl_seconds: float) -> None:
        self.name = name
        self.ttl_seconds = ttl_seconds

    async def acquire(self) -> bool:
        return False

    async def release(self) -> None:
        return None


@pytest.fixture
def fresh_stores() -> Iterator[None]:
    """The presence and worker-statistics stores are chosen again in the test and after."""
    presence.set_store(None)
    worker_stats.set_store(None)
    yield
    presence.set_store(None)
    worker_stats.set_store(None)


@pytest.mark.usefixtures("fresh_stores")
def test_without_redis_url_the_memory_backends_are_chosen() -> None:
    with override_settings(REDIS_URL=None), rt():
        assert type(presence.get_store()) is presence.MemoryStore
        assert type(worker_stats.get_store()) is worker_stats.MemoryStore
        assert type(get_lease("leader", 10.0)) is LocalLease


@pytest.mark.usefixtures("fresh_stores")
def test_a_project_without_the_redis_url_setting_gets_the_memory_backends(settings: Any) -> None:
    del settings.REDIS_URL  # another project need not define it
    with rt():
        assert type(presence.get_store()) is presence.MemoryStore
        assert type(get_lease("leader", 10.0)) is LocalLease


@pytest.mark.usefixtures("fresh_stores")
def test_with_redis_url_the_redis_backends_are_chosen_at_its_location() -> None:
    # Nothing connects: redis-py opens its connection at the first command.
    with override_settings(REDIS_URL="redis://127.0.0.1:9/0"), rt():
        assert type(presence.get_store()) is presence.RedisStore
        assert type(worker_stats.get_store()) is worker_stats.RedisStore
        lease = get_lease("leader", 10.0)
        assert isinstance(lease, RedisLease)
        assert lease.key == "townsquare:lease:leader"
        assert lease.ttl_seconds == 10.0


@pytest.mark.usefixtures("fresh_stores")
def test_a_backend_setting_overrides_the_choice_by_redis_url() -> None:
    with (
        override_settings(REDIS_URL="redis://127.0.0.1:9/0"),
        rt(
            PRESENCE_BACKEND="realtime.presence.MemoryStore",
            WORKER_STATS_BACKEND="realtime.worker_stats.MemoryStore",
            LEASE_BACKEND="realtime.tests.test_conf.FakeLease",
        ),
    ):
        assert type(presence.get_store()) is presence.MemoryStore
        assert type(worker_stats.get_store()) is worker_stats.MemoryStore
        lease = get_lease("leader", 3.0)
        assert (type(lease), lease.name, lease.ttl_seconds) == (FakeLease, "leader", 3.0)
        assert errors_of("realtime.") == []


@pytest.mark.usefixtures("fresh_stores")
def test_a_redis_backend_without_redis_url_is_refused() -> None:
    with (
        override_settings(REDIS_URL=None),
        rt(PRESENCE_BACKEND="realtime.presence.RedisStore"),
        pytest.raises(ImproperlyConfigured, match="RedisStore needs REDIS_URL"),
    ):
        presence.get_store()


@pytest.mark.usefixtures("fresh_stores")
@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("PRESENCE_BACKEND", presence.get_store),
        ("WORKER_STATS_BACKEND", worker_stats.get_store),
        ("LEASE_BACKEND", lambda: get_lease("leader", 1.0)),
    ],
)
def test_a_bogus_backend_path_is_an_error(name: str, make: Any) -> None:
    with rt(**{name: "realtime.presence.NoSuchStore"}):
        with pytest.raises(ImproperlyConfigured, match=f"'{name}'].*NoSuchStore"):
            make()
        with pytest.raises(ImproperlyConfigured):
            backend_class(name)
        assert [m.id for m in errors_of("realtime.")] == ["realtime.E002"]
    with rt(**{name: "not a path"}):
        assert [m.id for m in errors_of("realtime.")] == ["realtime.E002"]
