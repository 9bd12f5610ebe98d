"""The exactly-once checker's CI-sized runs (``tests/checker.py``).

Two topologies, 6 clients × 2 rooms, 20 s of traffic each (``CHECKER_SECONDS`` and
``CHECKER_CLIENTS`` make it longer or wider):

- ``single``: one worker on SQLite; sockets cut right after a send, the server restarted;
- ``nginx``: two workers behind nginx on PostgreSQL and a private Redis; sockets cut, one
  worker SIGKILLed and started again, Redis restarted, one worker restarted.

Each asserts the goal: 0 lost, 0 duplicated, every client saw every stored message once, in
order, nothing else; and that the faults really happened (resends and duplicate acks show
that the idempotency path was exercised). The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.checker import Config, run_check

pytestmark = pytest.mark.server

SECONDS = float(os.environ.get("CHECKER_SECONDS", "20"))
CLIENTS = int(os.environ.get("CHECKER_CLIENTS", "6"))


@pytest.mark.timeout(90 + 2 * SECONDS)
@pytest.mark.parametrize("topology", ["single", "nginx"])
async def test_every_message_stored_and_seen_exactly_once_under_faults(
    tmp_path: Path, topology: str
) -> None:
    scale = max(1.0, SECONDS / 20)
    config = Config.ci(topology, seconds=SECONDS, clients=CLIENTS)
    config.faults = {k: max(1, round(n * scale)) for k, n in config.faults.items()}
    result = await run_check(config, tmp_path)
    print("\n" + result.describe())
    figures = result.figures

    assert figures["lost"] == 0, result.describe()
    assert figures["duplicates"] == 0, result.describe()
    assert figures["delivered_twice"] == 0, result.describe()
    assert figures["phantom"] == 0, result.describe()
    assert figures["out_of_order"] == 0, result.describe()
    assert result.problems == [], result.describe()
    # Everything sent was acked and stored once.
    assert figures["sent"] == figures["acked"] == figures["stored"] > 0, result.describe()
    # The faults happened, and hit the clients: they reconnected and resent.
    for kind, count in config.faults.items():
        assert figures[f"faults_{kind}"] >= (count if kind != "cut" else 1), result.describe()
    assert figures["reconnects"] >= figures["faults_cut"], result.describe()
    assert figures["resends"] > 0, result.describe()
