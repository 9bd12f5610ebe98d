"""Bad input is a 4xx, never a 500: schemathesis drives every operation of ``/api/schema/``.

A real server process (``tests/server.py``) on a disposable database (SQLite, and PostgreSQL
when it is reachable: NUL bytes only break there) gets, for every operation of its OpenAPI
schema, cases that fit the schema (``GenerationMode.POSITIVE``) and cases that break it on
purpose (``NEGATIVE``: wrong types, huge integers, odd strings in paths, queries and bodies),
each sent twice: signed in as a staff user (a JWT from ``POST /api/token/``, plus the
publish key, so the staff-only and publish operations run their code) and anonymous.

Asserted, over the whole run:

- no response is a 5xx (a 503 ``unavailable`` would also fail: the database is up);
- every ``/api/`` response with a status of 400 or more is JSON (no HTML error page);
- the run was not meaningless: enough requests, some of them successful, few throttled;
- afterwards ``GET /healthz`` is 200 and the server's log has no traceback.

Bounded in time: ``FUZZ_EXAMPLES`` cases per operation and mode (default 10) and a wall-clock
budget ``FUZZ_BUDGET_SECONDS`` (default 30) per database after which no more requests are
sent. Runs are reproducible (Hypothesis' ``derandomize``) unless ``FUZZ_RANDOM=1``. To run
longer: ``FUZZ_EXAMPLES=500 FUZZ_BUDGET_SECONDS=900 FUZZ_RANDOM=1 .venv/bin/python -m pytest
tests/test_fuzz_api.py`` (docs/operations.md, "Fuzzing").

Ideas: schemathesis' Python API (``schemathesis.openapi.from_url``,
``APIOperation.as_strategy``, ``Case.call``); Hypothesis' ``settings``.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, GenerationMode
from schemathesis.core.result import Ok

from tests.conftest import token_for
from tests.server import Server, run_server_on

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
BUDGET_SECONDS = float(os.environ.get("FUZZ_BUDGET_SECONDS", "30"))
RANDOM = os.environ.get("FUZZ_RANDOM", "") not in ("", "0")
# pytest-timeout (120 s in pyproject.toml) grows with the budget: server start-up plus the run.
pytestmark = [pytest.mark.server, pytest.mark.timeout(BUDGET_SECONDS + 120)]
PUBLISH_KEY = "fuzz-publish-key-0123456789abcdef"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server of its own with demo data, on a disposable database of each kind."""
    workdir = tmp_path_factory.mktemp(f"fuzz-api-{request.param}")
    with run_server_on(
        request.param,
        workdir,
        PUBLISH_API_KEY=PUBLISH_KEY,
        # Throttles answer 429, which is fine, but must not make the run all 429s.
        TOKEN_RATE="100000/min",
        LOG_LEVEL="WARNING",
    ) as server:
        yield server


@dataclass
class Tally:
    """What the run saw: statuses by identity, and the failing cases (with curl commands)."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def count(self, predicate: Any) -> int:
        return sum(n for (who, status), n in self.statuses.items() if predicate(who, status))


def is_json(content_type: str, body: bytes) -> bool:
    if "json" not in content_type.split(";")[0]:
        return False
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def test_every_operation_answers_bad_input_with_a_json_4xx(api_server: Server) -> None:
    server = api_server
    identities: dict[str, dict[str, str]] = {
        "staff": {
            "Authorization": f"Bearer {token_for(server, 'alice')}",
            "X-Townsquare-Key": PUBLISH_KEY,
        },
        "anonymous": {},
    }
    schema = schemathesis.openapi.from_url(f"{server.http}/api/schema/?format=json", timeout=10)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the schema is valid OpenAPI
        operations.append(result.ok())
    paths = {op.path for op in operations}
    # Every app's API is in the schema (so every one of them is fuzzed).
    for expected in ("/api/rooms/", "/api/items/{id}/purchase/", "/api/notifications/",
                     "/api/feed/", "/api/publish/", "/api/token/"):
        assert expected in paths, sorted(paths)

    tally = Tally()
    deadline = time.monotonic() + BUDGET_SECONDS

    def send(case: schemathesis.Case) -> None:
        if time.monotonic() > deadline:
            return
        # Negative cases carry made-up headers, Host among them when Hypothesis has seen the
        # string in the modules this process imported (which tests ran before, here): the
        # server is reached at its own address, and a forged Host is refused by ALLOWED_HOSTS
        # (400) before any API code, logged by Django with a traceback.
        for name in [name for name in case.headers or {} if name.lower() == "host"]:
            del case.headers[name]
        for who, headers in identities.items():
            response = case.call(base_url=server.http, headers=headers, timeout=15)
            status = response.status_code
            tally.statuses[(who, status)] += 1
            content_type = (response.headers.get("content-type") or [""])[0]
            problem = ""
            if status >= 500:
                problem = f"server error {status}"
            elif status >= 400 and not is_json(content_type, response.content):
                problem = f"{status} is not JSON ({content_type or 'no content type'})"
            if problem:
                curl = case.as_curl_command(headers=headers, base_url=server.http)
                body = response.content[:300].decode(errors="replace")
                tally.failures.append(f"{who}: {problem}: {curl}\n    → {body}")

    plans: list[tuple[APIOperation, GenerationMode, dict[str, int] | None]] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            plans.append((operation, mode, None))
            # Random ids almost never exist: also fuzz the query and body of the demo's
            # first room, item and notification, so that the services see the input.
            names = re.findall(r"{(\w+)}", operation.path)
            if names:
                plans.append((operation, mode, dict.fromkeys(names, 1)))
    for operation, mode, path_parameters in plans:
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=not RANDOM,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: schemathesis.Case) -> None:
            send(case)

        try:
            run()
        except Unsatisfiable:
            # Nothing in the operation can be made invalid (no parameters, no body).
            assert mode is GenerationMode.NEGATIVE, operation.label

    print(
        f"\n[fuzz-api] operations={len(operations)} requests={tally.requests} "
        f"statuses={dict(sorted(Counter(s for _, s in tally.statuses.elements()).items()))} "
        f"failures={len(tally.failures)}"
    )
    assert not tally.failures, "\n".join(dict.fromkeys(tally.failures))  # unique, in order
    # Meaningful: many requests, the signed-in ones reached the code (2xx), few throttled.
    assert tally.requests >= min(200, 2 * len(operations) * EXAMPLES), tally.statuses
    assert tally.count(lambda who, s: who == "staff" and s < 300) >= len(operations), (
        tally.statuses
    )
    assert tally.count(lambda who, s: s == 429) <= tally.requests // 10, tally.statuses
    # Still serving, and nothing failed in the background either.
    assert httpx.get(f"{server.http}/healthz", timeout=5).status_code == 200
    assert "Traceback" not in server.log(), server.log()[-5000:]
