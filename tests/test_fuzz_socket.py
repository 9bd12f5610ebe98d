"""Bad input on ``/ws/`` gets a documented answer, never a crash: Hypothesis drives the socket.

A real server process (``tests/server.py``, on SQLite and on PostgreSQL when reachable) gets
arbitrary client frames on two sockets, one signed in with a JWT and one anonymous:

- JSON objects whose ``type`` is a known frame (``subscribe``, ``unsubscribe``, ``ping``,
  ``typing``, ``chat.send``) or any string, with the known fields and random others set to
  arbitrary JSON values: huge integers, floats, ``NaN``/``Infinity`` (not JSON), nested
  arrays and objects, strings with NUL, lone surrogates (as ``\\ud800`` escapes), any Unicode;
- JSON that is not an object, malformed and truncated JSON, empty frames;
- binary frames, text frames that are not UTF-8, and frames over ``MAX_FRAME_BYTES``.

After each frame the test sends a ``ping`` with a ref of its own and reads until that
``pong`` and one answer per frame sent (every text frame gets exactly one ``ack``, ``error``
or ``pong``; ``event`` frames may come in between), with a timeout: never silence. Every frame
the server sends must be a JSON object of a documented type, every ``error`` a documented
``code`` (docs/protocol.md, "Error codes"). A socket may only end with the close code its last
frame calls for: 1003 (binary; older servers answered ``bad_frame`` instead, also accepted),
1007 (not UTF-8), 1009 (too big); never 1011 or a dropped connection. Afterwards a new socket
subscribes and chats, and the server's log has no traceback.

Bounded in time: ``FUZZ_EXAMPLES`` × 20 frames (default 200) and ``FUZZ_BUDGET_SECONDS``
(default 30) per database; reproducible unless ``FUZZ_RANDOM=1`` (docs/operations.md,
"Fuzzing"). Ideas: Hypothesis' ``recursive`` strategies; RFC 6455 §7.4.1 close codes.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from realtime.protocol import ErrorCode
from tests.conftest import token_for
from tests.server import Server, run_server_on

EXAMPLES = 20 * int(os.environ.get("FUZZ_EXAMPLES", "10"))
BUDGET_SECONDS = float(os.environ.get("FUZZ_BUDGET_SECONDS", "30"))
RANDOM = os.environ.get("FUZZ_RANDOM", "") not in ("", "0")
# pytest-timeout (120 s in pyproject.toml) grows with the budget: server start-up plus the run.
pytestmark = [pytest.mark.server, pytest.mark.timeout(BUDGET_SECONDS + 120)]
MAX_FRAME_BYTES = 16 * 1024
ANSWER_TIMEOUT = 5.0

KNOWN_TYPES = ["subscribe", "unsubscribe", "ping", "typing", "chat.send"]
STREAMS = ["chat:room:1", "chat:room:2", "shop:item:1", "user:1", "user:2", "dashboard", "feed"]
ERROR_CODES = {str(code) for code in ErrorCode}
FRAME_TYPES = {"ack", "error", "pong", "event"}

# Arbitrary JSON values (json.dumps turns NaN and infinities into tokens that are not JSON).
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**70)
    | st.floats()
    | st.text()
    | st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff", "NaN", "1e400", "-0", "💬" * 50])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
objects = st.builds(
    lambda base, known, extra: {**extra, **base, **known},
    st.fixed_dictionaries({"type": st.sampled_from(KNOWN_TYPES) | st.text(max_size=20)}),
    st.fixed_dictionaries(
        {},
        optional={
            "ref": st.integers() | st.text(max_size=10) | json_values,
            "stream": st.sampled_from(STREAMS) | json_values,
            "since": st.integers(min_value=-2, max_value=5) | json_values,
            "room": st.integers(min_value=0, max_value=3) | json_values,
            "text": st.text(max_size=50) | json_values,
            "client_id": st.text(max_size=70) | json_values,
        },
    ),
    st.dictionaries(st.text(max_size=10), json_values, max_size=3),
)

# Frames that are valid but for at most a field or two, so that the handlers (not only the
# decoder) see the odd values.
near_valid = st.builds(
    lambda base, odd: {**base, **odd},
    st.one_of(
        st.builds(
            lambda stream, since, ref: {"type": "subscribe", "stream": stream, "ref": ref}
            | ({} if since is None else {"since": since}),
            st.sampled_from(STREAMS),
            st.none() | st.integers(min_value=0, max_value=3),
            st.integers(min_value=0, max_value=1000),
        ),
        st.builds(
            lambda stream: {"type": "unsubscribe", "stream": stream}, st.sampled_from(STREAMS)
        ),
        st.builds(
            lambda room, text: {"type": "chat.send", "room": room, "text": text},
            st.integers(min_value=1, max_value=3),
            st.text(min_size=1, max_size=40),
        ),
        st.builds(lambda stream: {"type": "typing", "stream": stream}, st.sampled_from(STREAMS)),
    ),
    st.dictionaries(
        st.sampled_from(["ref", "stream", "since", "room", "text", "client_id", "x"]),
        json_values,
        max_size=1,
    ),
)


def _json_text(value: Any, ascii_only: bool) -> str:
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: only its \u escape is valid UTF-8
        text = json.dumps(value, ensure_ascii=True)
    return text


# Most of the JSON is nearly valid, so that the odd values reach the handlers.
texts = st.builds(
    _json_text,
    st.integers(0, 3).flatmap(lambda n: near_valid if n else objects | json_values),
    st.booleans(),
)


@dataclass(frozen=True)
class Frame:
    """One client message: ``kind`` is ``text``, ``binary``, ``not_utf8`` or ``too_big``."""

    kind: str
    data: str | bytes


kinds = [
    texts.map(lambda t: Frame("text", t)),
    texts.flatmap(lambda t: st.integers(0, max(0, len(t) - 1)).map(lambda n: t[:n])).map(
        lambda t: Frame("text", t)  # truncated JSON (and the empty frame)
    ),
    st.text(max_size=30).map(lambda t: Frame("text", t)),
    st.binary(max_size=40).map(lambda b: Frame("binary", b)),
    st.sampled_from([b"\xff", b'{"type":"ping","ref":"\xc3"}', b"\xed\xa0\x80"]).map(
        lambda b: Frame("not_utf8", b)
    ),
    st.just(Frame("too_big", json.dumps({"type": "ping", "pad": "x" * MAX_FRAME_BYTES}))),
]
# Half the frames are whole JSON texts; the other kinds share the rest.
frames = st.integers(0, 2 * len(kinds) - 3).flatmap(lambda n: kinds[max(0, n - len(kinds) + 2)])

#: The close codes each kind of frame may end a socket with.
ALLOWED_CLOSE = {"text": set(), "binary": {1003}, "not_utf8": {1007}, "too_big": {1009}}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def socket_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server of its own with demo data and a rate limit no fuzzer reaches."""
    workdir = tmp_path_factory.mktemp(f"fuzz-socket-{request.param}")
    with run_server_on(
        request.param,
        workdir,
        RT_FRAMES_PER_SECOND="100000",
        RT_FRAME_BURST="100000",
        RT_MAX_FRAME_BYTES=str(MAX_FRAME_BYTES),
        LOG_LEVEL="WARNING",
    ) as server:
        yield server


@dataclass
class Sockets:
    """The two fuzzed sockets, reopened when the server closed one."""

    server: Server
    token: str
    stack: ExitStack
    open: dict[str, ClientConnection] = field(default_factory=dict)
    seen: Counter[str] = field(default_factory=Counter)

    def get(self, who: str) -> ClientConnection:
        if who not in self.open:
            protocols = ["townsquare", f"bearer.{self.token}"] if who == "signed" else None
            self.open[who] = self.stack.enter_context(
                connect(
                    f"{self.server.ws}/ws/",
                    origin=Origin(self.server.origin),
                    subprotocols=[Subprotocol(p) for p in protocols] if protocols else None,
                    open_timeout=5,
                    max_size=None,
                )
            )
        return self.open[who]


#: Log records with a traceback that are not a server bug. uvicorn's websockets-sansio
#: implementation logs its (correct) 1007 close for a text frame that is not UTF-8 at ERROR,
#: with the UnicodeDecodeError's traceback.
KNOWN_TRACEBACKS: tuple[str, ...] = ()


def tracebacks(log: str) -> list[str]:
    """The log records (a line with a timestamp and what follows it) that hold a traceback,
    except the known ones."""
    records = re.split(r"(?m)^(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log)
    return [
        record
        for record in records
        if "Traceback" in record and not any(known in record for known in KNOWN_TRACEBACKS)
    ]


def check_frame(raw: str | bytes, frame: Frame) -> dict[str, Any]:
    """Assert that one server frame is well formed; return it decoded."""
    assert isinstance(raw, str), f"binary frame from the server after {frame!r}"
    decoded = json.loads(raw)
    assert isinstance(decoded, dict) and decoded.get("type") in FRAME_TYPES, (raw, frame)
    if decoded["type"] == "error":
        assert decoded.get("code") in ERROR_CODES, (raw, frame)
        assert isinstance(decoded.get("detail"), str), (raw, frame)
    return decoded


def exchange(sockets: Sockets, who: str, frame: Frame) -> None:
    """Send ``frame`` and a sentinel ping; read until every frame sent has its answer."""
    ws = sockets.get(who)
    sentinel = f"fuzz-{uuid.uuid4().hex}"
    try:
        if frame.kind == "not_utf8":
            ws.send(frame.data, text=True)
        else:
            ws.send(frame.data)
        ws.send(json.dumps({"type": "ping", "ref": sentinel}))
        # Every text frame gets one ack, error or pong; a binary one an error or a close.
        pending = 2
        while pending:
            decoded = check_frame(ws.recv(timeout=ANSWER_TIMEOUT), frame)
            if decoded["type"] != "event":
                pending -= 1
                sockets.seen[decoded.get("code") or decoded["type"]] += 1
            # The database is up: "unavailable" would mean bad input reached it unchecked.
            assert decoded.get("code") != "unavailable", f"{who}: {decoded} after {frame!r}"
    except TimeoutError:
        pytest.fail(f"{who}: no answer within {ANSWER_TIMEOUT} s to {frame!r}")
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else None
        del sockets.open[who]
        sockets.seen[f"close {code}"] += 1
        assert code in ALLOWED_CLOSE[frame.kind], f"{who}: closed with {code} after {frame!r}"


def test_every_frame_gets_a_documented_answer(socket_server: Server) -> None:
    server = socket_server
    stack = ExitStack()
    sockets = Sockets(server, token_for(server, "alice"), stack)
    deadline = time.monotonic() + BUDGET_SECONDS
    sent = Counter[str]()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not RANDOM,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(who=st.sampled_from(["signed", "anonymous"]), frame=frames)
    def fuzz(who: str, frame: Frame) -> None:
        if time.monotonic() > deadline:
            return
        sent[frame.kind] += 1
        exchange(sockets, who, frame)

    with stack:
        fuzz()
    print(f"\n[fuzz-socket] sent={dict(sent)} answers={dict(sockets.seen)}")
    assert sum(sent.values()) >= min(EXAMPLES, 100), sent
    # The run reached the handlers: acks (valid frames) and several kinds of refusal.
    assert sockets.seen["ack"] and sockets.seen["bad_json"] and sockets.seen["invalid"], sockets
    assert sockets.seen["close 1009"] and sockets.seen["close 1007"], sockets.seen

    # Still serving: a new socket subscribes and chats.
    with connect(
        f"{server.ws}/ws/",
        origin=Origin(server.origin),
        subprotocols=[Subprotocol("townsquare"), Subprotocol(f"bearer.{sockets.token}")],
        open_timeout=5,
    ) as ws:
        ws.send(json.dumps({"type": "subscribe", "stream": "chat:room:1", "ref": "s"}))
        ws.send(json.dumps({"type": "chat.send", "room": 1, "text": "after", "client_id": "z"}))
        got: list[dict[str, Any]] = []

        def stored(f: dict[str, Any]) -> bool:
            return f.get("event") == "chat.message" and f["data"]["client_id"] == "z"

        def acked(f: dict[str, Any]) -> bool:
            return f["type"] == "ack" and f["for"] == "chat.send" and f["client_id"] == "z"

        while not (any(map(stored, got)) and any(map(acked, got))):
            got.append(json.loads(ws.recv(timeout=ANSWER_TIMEOUT)))
        assert got[0] == {**got[0], "type": "ack", "ref": "s", "for": "subscribe"}, got
    assert not tracebacks(server.log()), tracebacks(server.log())
