"""ASGI lifespan: start the background services with the server, stop them with it.

uvicorn sends ``lifespan.startup``/``lifespan.shutdown``. Servers without the lifespan
protocol (daphne, so ``runserver``) never do; there the services start with the first
connection instead, when ``BACKGROUND_AUTOSTART`` allows it.
"""

from __future__ import annotations

from typing import Any

from .background import Runner
from .conf import rt_settings


class LifespanMiddleware:
    """Wraps the ASGI application; answers ``lifespan`` scopes itself."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.runner: Runner | None = None

    def _ensure_started(self) -> None:
        if self.runner is None:
            self.runner = Runner()
        self.runner.start()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if rt_settings().BACKGROUND_AUTOSTART:
                        self._ensure_started()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.runner is not None:
                        await self.runner.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if self.runner is None and rt_settings().BACKGROUND_AUTOSTART:
            self._ensure_started()
        return await self.app(scope, receive, send)
