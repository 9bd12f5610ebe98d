"""The limit: a plain asyncio WebSocket broadcast server (``websockets`` on uvloop).

A benchmark reference, not part of Townsquare. Every socket joins the room named by its
path (``/room/<name>``); every text message a client sends is broadcast, as it is, to
every socket of that room (the sender included) with ``websockets.broadcast()``, which
encodes the frame once and writes it to each connection's transport without awaiting.
No JSON, no auth, no persistence: the cost of moving bytes from one socket to N.

    python bench/reference/limit.py --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections import defaultdict

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

ROOMS: defaultdict[str, set[ServerConnection]] = defaultdict(set)


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else "/"
    room = ROOMS[path]
    room.add(ws)
    try:
        async for message in ws:
            broadcast(room, message)
    finally:
        room.discard(ws)
        if not room:
            ROOMS.pop(path, None)


async def main(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    # No compression (the load generator does not offer it anyway), a large backlog for the
    # idle-capacity scenario, keepalive pings as the library's defaults.
    async with serve(handler, host, port, compression=None, backlog=4096, max_size=2**20):
        print(f"limit server on ws://{host}:{port}/", flush=True)
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    uvloop.run(main(args.host, args.port))
