"""Run nginx with ``deploy/nginx.conf`` in front of test servers.

The file is used as it ships, with only the ``server`` lines of ``upstream townsquare`` and
the ``listen`` line rewritten: its relative paths (pid, logs, temporary files) land in the
prefix directory given with ``-p``, and ``daemon off`` keeps nginx in the foreground as a
child of the test, stopped by its PID. Skips (or fails under
``TOWNSQUARE_REQUIRE_SERVICES``) when nginx is not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.server import ROOT, free_port, lost_the_port
from tests.services import need, port_open

CONF = ROOT / "deploy" / "nginx.conf"
#: The access log, relative to the prefix directory (``access_log`` in deploy/nginx.conf).
ACCESS_LOG = "access.log"
ERROR_LOG = "error.log"

_UPSTREAM = re.compile(r"(upstream townsquare \{)([^{}]*?)(\n\s*\})")
_SERVER_LINE = re.compile(r"^(\s*)server \d[^;]*;\n", re.MULTILINE)
_LISTEN_LINE = re.compile(r"^(\s*)listen [^;]*;", re.MULTILINE)


def nginx_binary() -> str | None:
    """The nginx executable (``TOWNSQUARE_NGINX``, else PATH, else Debian's /usr/sbin)."""
    candidates = [os.environ.get("TOWNSQUARE_NGINX"), shutil.which("nginx"), "/usr/sbin/nginx"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def render(conf: str, upstream_ports: Sequence[int], listen_port: int) -> str:
    """``conf`` with its upstream servers and its listen address replaced (127.0.0.1 only)."""
    upstream = _UPSTREAM.search(conf)
    if upstream is None:
        raise ValueError("deploy/nginx.conf has no `upstream townsquare { ... }` block")
    body = upstream.group(2)
    first = _SERVER_LINE.search(body)
    if first is None:
        raise ValueError("`upstream townsquare` has no `server` line to replace")
    indent = first.group(1)
    servers = "".join(
        f"{indent}server 127.0.0.1:{port} max_fails=1 fail_timeout=10s;\n"
        for port in upstream_ports
    )
    body = body[: first.start()] + servers + _SERVER_LINE.sub("", body[first.start() :])
    conf = conf[: upstream.start(2)] + body + conf[upstream.end(2) :]
    conf, listens = _LISTEN_LINE.subn(rf"\g<1>listen 127.0.0.1:{listen_port};", conf)
    if listens != 1:
        raise ValueError(f"expected one `listen` line in deploy/nginx.conf, found {listens}")
    return conf


@contextmanager
def run_nginx(tmpdir: Path, upstream_ports: Sequence[int]) -> Iterator[int]:
    """Start nginx on a free port of 127.0.0.1, proxying to ``upstream_ports``; yield the port.

    ``tmpdir`` becomes nginx's prefix: the rendered ``nginx.conf``, ``nginx.pid``,
    ``access.log`` (``ACCESS_LOG``), ``error.log`` and the temporary directories.
    """
    binary = nginx_binary()
    need(binary is not None, "nginx not installed (apt-get install nginx)")
    assert binary is not None
    tmpdir.mkdir(parents=True, exist_ok=True)
    conf = tmpdir / "nginx.conf"
    error_log = tmpdir / ERROR_LOG
    # -e: the error log before the configuration is read (the built-in default is a system
    # path that an unprivileged process may not open).
    args = [binary, "-p", f"{tmpdir}/", "-c", str(conf), "-e", str(error_log)]
    # Started again on another port when another process bound the picked one first.
    for attempt in range(3):
        port = free_port()
        conf.write_text(render(CONF.read_text(), upstream_ports, port))
        check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx rejected the configuration:\n{check.stderr}")
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while not port_open("127.0.0.1", port):
            if process.poll() is not None:
                if attempt < 2 and lost_the_port(_read(error_log)):
                    break
                raise RuntimeError(f"nginx exited early:\n{_read(error_log)}")
            if time.monotonic() > deadline:
                _stop(process)
                raise RuntimeError(f"nginx did not listen in 15 s:\n{_read(error_log)}")
            time.sleep(0.05)
        else:
            break
    try:
        yield port
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    # SIGTERM is nginx's fast shutdown: the master closes its workers' connections (open
    # WebSockets included) and exits; SIGQUIT would wait for every socket to close.
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else "(no error log)"
