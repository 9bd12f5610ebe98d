"""The sizing model's arithmetic (``bench/sizing.py``): pure functions, no servers."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_sizing", BENCH / "sizing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_sizing"] = module
    spec.loader.exec_module(module)
    return module


sizing = _load()
Costs = sizing.Costs

#: Round numbers, so that every expected figure below can be worked out by hand.
SIMPLE = Costs(
    message_us=100.0,
    receive_us=0.0,
    deliver_us=10.0,
    open_us=0.0,
    socket_kib=0.0,
    worker_mib=0.0,
    redis_publish_us=50.0,
    redis_push_us=10.0,
    redis_commands=1.0,
    redis_bytes_in=500.0,
    db_ms=0.5,
    db_commits=0.25,
    pool_max=10,
    redis_connections=4,
)


def test_workers_per_room_even_and_random() -> None:
    assert sizing.workers_per_room(4, 25, even=True) == 4
    assert sizing.workers_per_room(4, 2, even=True) == 2
    assert sizing.workers_per_room(1, 100) == 1
    assert sizing.workers_per_room(50, 1) == pytest.approx(1.0)
    # 4 workers, 2 sockets placed at random: both on one worker with probability 1/4.
    assert sizing.workers_per_room(4, 2) == pytest.approx(1.75)
    assert sizing.workers_per_room(0, 10) == 0.0


def test_capacity_is_one_core_over_the_cost_of_a_message() -> None:
    costs = Costs(message_us=300.0, receive_us=50.0, deliver_us=20.0)
    # 300 + 2 workers × 50 + 25 × 20 = 900 µs per message of 25 deliveries.
    assert sizing.message_cpu_us(costs, 2, 25, even=True) == pytest.approx(900.0)
    assert sizing.capacity(costs, workers=2, room_size=25) == pytest.approx(1e6 / 900 * 25)
    assert sizing.capacity(costs, workers=2, room_size=25, cores=4) == pytest.approx(4e6 / 900 * 25)


def test_predict_cpu_bound_plan() -> None:
    plan = sizing.predict(
        sockets=10_000, messages_per_s=1_000, rooms=100, room_size=100, costs=SIMPLE
    )
    # 1,000 × (100 + 100 × 10) µs = 1.1 cores; at 60% of a core each: 2 workers.
    assert plan.cpu_cores == pytest.approx(1.1)
    assert plan.deliveries_per_s == 100_000
    assert (plan.workers_for_cpu, plan.workers_for_memory, plan.workers) == (2, 1, 2)
    assert plan.db_connections == 20 and not plan.pgbouncer
    assert plan.db_busy_connections == pytest.approx(0.5)
    # Redis: 1,000 × (50 + 2 workers × 10) µs = 0.07 cores: one shard.
    assert plan.redis_cpu_cores == pytest.approx(0.07)
    assert plan.redis_shards == 1
    assert plan.redis_client_connections == 8
    assert plan.lines()[0].startswith("10,000 sockets, 1,000 messages/s over 100 rooms of 100")


def test_predict_reaches_a_fixed_point_when_workers_add_cost() -> None:
    costs = Costs(message_us=100.0, receive_us=200.0, deliver_us=10.0, open_us=0.0)
    plan = sizing.predict(
        sockets=50_000, messages_per_s=2_000, rooms=500, room_size=100, costs=costs
    )
    # Self-consistent: the receive part is computed for the number of workers chosen.
    spread = sizing.workers_per_room(plan.workers, 100)
    assert plan.workers_per_room == pytest.approx(spread)
    assert plan.cpu["receive"] == pytest.approx(2_000 * spread * 200 / 1e6)
    assert plan.workers == math.ceil(plan.cpu_cores / 0.6)
    assert plan.workers > 1


def test_predict_memory_bound_and_pgbouncer() -> None:
    heavy = Costs(**{**SIMPLE.__dict__, "socket_kib": 1024.0, "pool_max": 20})
    # 100,000 sockets × 1 MiB = 97.7 GiB; 4 GiB per worker: 25 workers, 500 connections.
    plan = sizing.predict(sockets=100_000, messages_per_s=10, rooms=10, room_size=10, costs=heavy)
    assert plan.workers_for_memory == 25 and plan.workers == 25
    assert plan.db_connections == 500 and plan.pgbouncer
    # Each of the other 24 workers has 40% of a core spare for the restarted one's opens.
    assert plan.restart_absorb_s == 0.0


def test_predict_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        sizing.predict(sockets=0, messages_per_s=1, rooms=1, room_size=1, costs=SIMPLE)
    with pytest.raises(ValueError):
        sizing.predict(sockets=10, messages_per_s=-1, rooms=1, room_size=1, costs=SIMPLE)
    with pytest.raises(ValueError):
        sizing.predict(
            sockets=10, messages_per_s=1, rooms=1, room_size=1, costs=SIMPLE, utilisation=0
        )


def _measured(workers: int, size: int, cpu_us: float, redis_us: float) -> object:
    return sizing.Measured(
        workers=workers,
        shards=1,
        rooms=10,
        room_size=size,
        deliveries_per_s=1.0,
        cpu_us=cpu_us,
        server_cpu_pct=100.0,
        redis_us=redis_us,
        redis_commands=0.5,
        redis_bytes_in=400.0,
        redis_clients=8.0 * workers / 2,
        db_ms=0.3,
        db_commits=0.2,
        db_connections=3.0,
        loss=0,
        load=0.5,
        runs=1,
    )


def test_fit_costs_recovers_the_costs_it_was_built_from() -> None:
    # message 300, receive 80, deliver 20 µs; Redis 30 + 5 per subscribed worker.
    costs = sizing.fit_costs(
        one_small=_measured(1, 5, 300 + 80 + 5 * 20, 35),
        one_large=_measured(1, 50, 300 + 80 + 50 * 20, 35),
        two_small=_measured(2, 5, 300 + 2 * 80 + 5 * 20, 40),
        opens={"sockets": 400, "open_server_cpu_s": 2.0, "rss_per_socket_kib": 27.5},
        pool_max=10,
    )
    assert costs.message_us == pytest.approx(300)
    assert costs.receive_us == pytest.approx(80)
    assert costs.deliver_us == pytest.approx(20)
    assert costs.redis_publish_us == pytest.approx(30)
    assert costs.redis_push_us == pytest.approx(5)
    assert costs.open_us == pytest.approx(5000)
    assert costs.socket_kib == 27.5
    assert costs.redis_connections == 4
    # Costs round-trips through the results file's dict, ignoring unknown keys.
    assert Costs.from_dict({**costs.__dict__, "unknown": 1}) == costs
