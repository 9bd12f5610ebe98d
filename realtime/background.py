"""Background services that run with the server: per process, or on the leader only.

Apps register services in ``AppConfig.ready()``; the ASGI lifespan (``realtime.lifespan``)
starts them when the server starts and cancels them when it stops. Leader services run in
the one process that holds the ``leader`` lease (``realtime.lease``): each process tries to
take or renew it every third of its ttl, starts the leader services when it gets it and stops
them when it loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from .conf import rt_settings
from .lease import WORKER_ID, Lease, get_lease

logger = logging.getLogger(__name__)

ServiceFactory = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Service:
    """A long-running coroutine: ``factory()`` is awaited until cancelled."""

    name: str
    factory: ServiceFactory
    leader_only: bool


_services: dict[str, Service] = {}


def register_service(name: str, factory: ServiceFactory, *, leader_only: bool) -> None:
    """Register a background service (call from ``AppConfig.ready()``)."""
    _services[name] = Service(name, factory, leader_only)


class Runner:
    """Starts and stops the registered services in one event loop."""

    def __init__(
        self, lease: Lease | None = None, services: dict[str, Service] | None = None
    ) -> None:
        """``lease``: the leader lease (default: the ``leader`` lease of ``LEASE_BACKEND``);
        ``services``: name → ``Service`` to run (default: the registered ones, as registered
        at ``start``; tests pass their own, ``{}`` for none)."""
        limits = rt_settings()
        self.services = _services if services is None else services
        self.lease = lease or get_lease("leader", limits.LEASE_TTL_SECONDS)
        self.is_leader = False
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._elector: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return self._elector is not None

    def start(self) -> None:
        """Start per-process services now and the leader election loop."""
        if self._elector is not None:
            return
        for service in self.services.values():
            if not service.leader_only:
                self._start(service)
        self._elector = asyncio.get_running_loop().create_task(self._elect())

    def _start(self, service: Service) -> None:
        task = self._tasks.get(service.name)
        if task is None or task.done():
            self._tasks[service.name] = asyncio.get_running_loop().create_task(
                self._supervise(service)
            )

    async def _supervise(self, service: Service) -> None:
        # A service that crashes is logged and restarted after a pause, not lost.
        while True:
            try:
                await service.factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("event=service.crash service=%s", service.name)
                await asyncio.sleep(1.0)

    async def _elect(self) -> None:
        loop = asyncio.get_running_loop()
        renewed = -float("inf")  # loop time of the last renewal the store confirmed
        while True:
            asked = loop.time()  # the lease, if renewed, runs for its ttl from no earlier
            try:
                held = await self.lease.acquire()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("event=lease.error lease=%s error=%r", self.lease.name, exc)
                # The store did not answer (Redis down or hung): the lease we renewed last
                # is still ours until its ttl runs out, and nobody else can take it before
                # then. Stepping down at the first failed renewal would stop the leader's
                # services for the length of any Redis hiccup.
                held = self.is_leader and loop.time() - renewed < self.lease.ttl_seconds
            else:
                if held:
                    renewed = asked
            if held and not self.is_leader:
                logger.info("event=leader.acquired worker=%s", WORKER_ID)
                self.is_leader = True
                for service in self.services.values():
                    if service.leader_only:
                        self._start(service)
            elif not held and self.is_leader:
                logger.warning("event=leader.lost worker=%s", WORKER_ID)
                self.is_leader = False
                await self._stop(leader_only=True)
            await asyncio.sleep(self.lease.ttl_seconds / 3)

    async def _stop(self, *, leader_only: bool) -> None:
        for name, task in list(self._tasks.items()):
            if leader_only and not self.services[name].leader_only:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            del self._tasks[name]

    async def stop(self) -> None:
        """Stop everything and give the leader lease up."""
        if self._elector is not None:
            self._elector.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._elector
            self._elector = None
        await self._stop(leader_only=False)
        if self.is_leader:
            with contextlib.suppress(Exception):
                await self.lease.release()
            self.is_leader = False
