"""The exactly-once checker (``tests/checker.py``): its CI-sized runs, and its own detection.

Two topologies, 6 clients × 2 rooms, 20 s of traffic each (``CHECKER_SECONDS`` and
``CHECKER_CLIENTS`` make it longer or wider), two Chromium pages typing into the first room
(when Chromium is installed; required under ``TOWNSQUARE_REQUIRE_SERVICES=1``):

- ``single``: one worker on SQLite; sockets cut right after a send, the server restarted;
- ``nginx``: two workers behind nginx on PostgreSQL and a private Redis; sockets cut, each
  worker SIGKILLed and started again, Redis restarted, one worker restarted.

Each asserts the goal: 0 lost, 0 duplicated, every client saw every stored message once, in
order, nothing else; the pages show exactly the stored list; and the faults really happened
(reconnects and resends show that the idempotency path was exercised). The figures are
printed (``pytest -s``). A fast test checks that ``verify`` reports each kind of failure.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests import services
from tests.checker import (
    CheckClient,
    Config,
    Deployment,
    Outgoing,
    Row,
    Seen,
    run_check,
    verify,
)

SECONDS = float(os.environ.get("CHECKER_SECONDS", "20"))
CLIENTS = int(os.environ.get("CHECKER_CLIENTS", "6"))


def chromium_pages() -> int:
    """2 when Chromium is installed or required (then its absence fails the run), else 0."""
    present = os.path.exists(services.CHROMIUM) or shutil.which("chromium") is not None
    return 2 if present or services.services_required() else 0


@pytest.mark.server
@pytest.mark.timeout(120 + 2 * SECONDS)
@pytest.mark.parametrize("topology", ["single", "nginx"])
async def test_every_message_stored_and_seen_exactly_once_under_faults(
    tmp_path: Path, topology: str
) -> None:
    config = Config.ci(topology, seconds=SECONDS, clients=CLIENTS, browsers=chromium_pages())
    result = await run_check(config, tmp_path)
    print("\n" + result.describe())
    figures = result.figures

    assert figures["lost"] == 0, result.describe()
    assert figures["duplicates"] == 0, result.describe()
    assert figures["delivered_twice"] == 0, result.describe()
    assert figures["phantom"] == 0, result.describe()
    assert figures["out_of_order"] == 0, result.describe()
    assert result.problems == [], result.describe()
    # Everything sent was acked and stored once; the pages' messages too.
    typed = figures.get("page_typed", 0)
    assert figures["sent"] == figures["acked"] > 0, result.describe()
    assert figures["stored"] == figures["sent"] + typed, result.describe()
    if config.browsers:
        assert typed > 0 and figures["pages_not_matching"] == 0, result.describe()
    # The faults happened, and hit the clients: they reconnected and resent.
    for kind, count in config.faults.items():
        assert figures[f"faults_{kind}"] >= (count if kind != "cut" else 1), result.describe()
    assert figures["reconnects"] >= figures["faults_cut"], result.describe()
    assert figures["resends"] > 0, result.describe()


def test_verify_reports_losses_duplicates_phantoms_and_disorder() -> None:
    """The checker's own test: a run where everything went wrong is reported as such."""
    deployment = Deployment(workers=[], http="", ws="", database_url="")
    stream = "chat:room:1"
    at = datetime.now(UTC)

    def row(offset: int, client_id: str) -> Row:
        return Row(1, offset, 100 + offset, client_id, 1, at, client_id)

    # c0-1 stored twice (what the unique constraint is there to prevent).
    rows = [row(1, "c0-1"), row(2, "c0-2"), row(3, "c0-3"), row(4, "c0-4"), row(5, "c0-1")]
    client = CheckClient("c0", "alice", "token", deployment, [1])
    client.sent = {cid: Outgoing(cid, 1, cid) for cid in ("c0-1", "c0-2", "c0-3", "c0-4", "c0-9")}
    client.acks = {
        "c0-1": {"id": 101, "offset": 1},
        "c0-4": {"id": 104, "offset": 4},
        "c0-9": {"id": 109, "offset": 9},  # acked, never stored
    }
    # Saw 1, 3 twice, 2 after 3, an offset never stored, and never 4 or 5.
    client.seen[stream] = [
        Seen(1, 101, "c0-1"),
        Seen(3, 103, "c0-3"),
        Seen(3, 103, "c0-3"),
        Seen(2, 102, "c0-2"),
        Seen(7, 107, "x"),
    ]
    result = verify(Config(), [client], rows, [])
    figures = result.figures
    assert figures["duplicates"] == 1
    assert figures["lost_acked"] == 1
    assert figures["lost_unseen"] == 2  # offsets 4 and 5
    assert figures["lost"] == 3
    assert figures["delivered_twice"] == 1
    assert figures["phantom"] == 1
    assert figures["out_of_order"] == 1
    text = "\n".join(result.problems)
    assert "c0-9 acked at chat:room:1 offset 9" in text
    assert "c0 never saw chat:room:1 offsets 4-5" in text
    assert "c0-1 stored 2 times" in text
    assert not result.ok
