"""What every test server shares: the loopback address, the errors, free ports."""

from __future__ import annotations

import re
import socket
import threading
import time

LOOPBACK = "127.0.0.1"
OWNER_MARKER = "threadline-owner"
RUNTIME_PREFIX = "threadline-"
# Users of the private servers: a safe file and config name everywhere.
_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]*$")
_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin", "/usr/local/bin")


class ServerError(RuntimeError):
    """A test server failed to start/stop or a helper command failed."""


class ServerBinaryMissing(ServerError):
    """The server software is not installed."""


# ---------------------------------------------------------------------------
# ports
# ---------------------------------------------------------------------------

_handed_out_ports: set[int] = set()
_port_lock = threading.Lock()


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is currently free on ``host``.

    Ports already handed out by this process are not handed out again, which
    avoids two servers started in quick succession racing for the same port.
    (Another process can still grab it; the server classes retry on EADDRINUSE.)
    """
    with _port_lock:
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise ServerError("could not find a free port")


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on host:port.

    Raises ``TimeoutError`` if nothing does within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_err: Exception | None = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as e:
            last_err = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s ({last_err})")
        time.sleep(0.05)
