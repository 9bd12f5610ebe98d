"""``manage.py serve``: run Townsquare under uvicorn, the production ASGI server.

uvicorn rather than daphne: it applies backpressure on ``send``, closes over-size frames with
1009, and sends empty frames (daphne drops them). ``runserver`` (daphne) stays for
development. Several workers (``--workers N``) need ``REDIS_URL`` so that publishes reach
sockets on every worker.

Several workers also share their metrics through prometheus-client's multiprocess mode: the
command points ``PROMETHEUS_MULTIPROC_DIR`` at a directory before uvicorn spawns the workers,
which inherit it (see ``realtime.metrics``). An operator's own ``PROMETHEUS_MULTIPROC_DIR`` is
used as it is, cleared of the previous run's files; otherwise a fresh directory under the
system's temporary directory is made for this run and removed after it.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime import metrics
from realtime.conf import rt_settings

#: The package each of uvicorn's WebSocket implementations imports (all are dependencies).
WS_LIBRARIES = {"websockets-sansio": "websockets", "websockets": "websockets", "wsproto": "wsproto"}


def _missing_ws_library(ws: str) -> str | None:
    """The package ``--ws ws`` needs when it is not importable, else None.

    uvicorn imports the implementation when it loads its config, in each worker, and a missing
    package ends the server with an import traceback; this says what to install instead.
    """
    package = WS_LIBRARIES.get(ws)
    if package is None or importlib.util.find_spec(package) is not None:
        return None
    return package


def proxy_options(trusted_proxies: list[str]) -> dict[str, Any]:
    """uvicorn's proxy-header options for ``TRUSTED_PROXIES`` (IPs or networks, or ``*``).

    Empty: ``proxy_headers`` off, so ``X-Forwarded-For``/``-Proto`` are ignored and the
    client address (REMOTE_ADDR, a socket's ``scope["client"]``) is the TCP peer. uvicorn's
    own default would trust 127.0.0.1 (or ``$FORWARDED_ALLOW_IPS``), letting any local client
    name its address. Otherwise the headers are believed from those addresses only, and
    uvicorn takes the right-most address that is not a trusted proxy (uvicorn's "Proxies
    and forwarded headers" docs).
    """
    if not trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(trusted_proxies)}


class Command(BaseCommand):
    help = "Serve HTTP and WebSockets with uvicorn."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=1)
        parser.add_argument(
            "--ws",
            default=os.environ.get("SERVE_WS", "websockets-sansio"),
            choices=["websockets-sansio", "websockets", "wsproto"],
            help="uvicorn's WebSocket implementation (default: $SERVE_WS or websockets-sansio)",
        )
        parser.add_argument("--no-access-log", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        workers = options["workers"]
        if workers > 1 and not getattr(settings, "REDIS_URL", None):
            raise CommandError(
                "--workers > 1 needs REDIS_URL: the in-memory channel layer cannot carry "
                "publishes between processes."
            )
        missing = _missing_ws_library(options["ws"])
        if missing:
            raise CommandError(
                f"--ws {options['ws']} needs the {missing!r} package, which is not installed: "
                f"pip install {missing}"
            )
        self.stdout.write(
            f"Serving on http://{options['host']}:{options['port']}/ "
            f"({workers} worker{'s' if workers > 1 else ''}, ws={options['ws']})"
        )
        self.prepare_metrics(workers)
        # ASGI_APPLICATION ("package.module.attribute"), as Channels' runserver reads it;
        # uvicorn wants "package.module:attribute".
        module, _, attribute = settings.ASGI_APPLICATION.rpartition(".")
        uvicorn.run(
            f"{module}:{attribute}",
            host=options["host"],
            port=options["port"],
            workers=workers,
            ws=options["ws"],
            ws_max_size=rt_settings().MAX_FRAME_BYTES,
            # Starts the background services (realtime.lifespan).
            lifespan="on",
            # Django's LOGGING configures uvicorn's loggers, with tokens redacted.
            log_config=None,
            access_log=not options["no_access_log"],
            **proxy_options(getattr(settings, "TRUSTED_PROXIES", [])),
        )

    def prepare_metrics(self, workers: int) -> None:
        """Set ``PROMETHEUS_MULTIPROC_DIR`` up for ``workers`` processes, before they start.

        One worker runs inside this process, whose prometheus-client was imported (with
        Django's apps) before this point and so keeps its in-memory values: there only an
        operator's directory, set before the process started, means multiprocess mode.
        """
        path = os.environ.get(metrics.MULTIPROC_ENV)
        if path:
            metrics.reset_directory(path)
        elif workers > 1:
            path = tempfile.mkdtemp(prefix=f"townsquare-metrics-{os.getpid()}-")
            os.environ[metrics.MULTIPROC_ENV] = path
            # uvicorn returns after a SIGTERM or SIGINT once the workers are gone.
            atexit.register(shutil.rmtree, path, ignore_errors=True)
