"""A private Radicale CalDAV server."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Sequence

from tests.servers.base import _USERNAME_RE, LOOPBACK, ServerBinaryMissing, ServerError, free_port, wait_for_port
from tests.servers.processes import _make_runtime_root, _register, _tail, _unregister, reap_orphans


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the test process dies (even by SIGKILL)."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Radicale:
    """A private Radicale CalDAV server (PyPI ``radicale``) on 127.0.0.1.

    ``Radicale(tmpdir=None, *, port=None, python=None, keep_data=False)``

    Runs ``python -m radicale --config FILE`` as a child process with its own
    config, htpasswd file (plain passwords) and filesystem storage.  Users are
    added with ``add_user`` (Radicale re-reads the htpasswd file on each
    login) and get a calendar with ``make_calendar``; ``url`` is the server
    root, ``calendar_url(user, cal)`` a calendar collection.  Sync tokens
    (RFC 6578) and CalendarServer ctags are both offered by Radicale.
    The child dies with the process that started it (PR_SET_PDEATHSIG).
    """

    def __init__(
        self,
        tmpdir: str | os.PathLike | None = None,
        *,
        port: int | None = None,
        python: str | None = None,
        keep_data: bool = False,
    ):
        import sys

        self.tmpdir = Path(tmpdir) if tmpdir is not None else None
        self.host = LOOPBACK
        self.port = port or 0
        self._fixed_port = port is not None
        self.python = python or sys.executable
        self.keep_data = keep_data
        self.root: Path | None = None
        self._remove_root = False
        self._proc: subprocess.Popen | None = None
        self._lock = threading.RLock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def users_file(self) -> Path:
        return self.root / "users"

    @property
    def storage(self) -> Path:
        return self.root / "collections"

    @property
    def conf_path(self) -> Path:
        return self.root / "radicale.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "radicale.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _config(self) -> str:
        return f"""[server]
hosts = {self.host}:{self.port}
max_connections = 20
delay_on_error = 0.01
[auth]
type = htpasswd
htpasswd_filename = {self.users_file}
htpasswd_encryption = plain
delay = 0.01
[rights]
type = owner_only
[storage]
filesystem_folder = {self.storage}
[web]
type = none
[logging]
level = warning
"""

    def start(self) -> "Radicale":
        with self._lock:
            if self.running:
                return self
            r = subprocess.run([self.python, "-c", "import radicale"], capture_output=True)
            if r.returncode != 0:
                raise ServerBinaryMissing(f"radicale is not importable by {self.python}")
            reap_orphans()
            if self.root is None:
                self.root, self._remove_root = _make_runtime_root(self.tmpdir, "radicale", False)
                self.storage.mkdir(exist_ok=True)
                self.users_file.touch()
            attempts = 1 if self._fixed_port else 5
            for _ in range(attempts):
                if not self._fixed_port:
                    self.port = free_port()
                self.conf_path.write_text(self._config())
                log = open(self.log_path, "ab")
                try:
                    self._proc = subprocess.Popen(
                        [self.python, "-m", "radicale", "--config", str(self.conf_path)],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        preexec_fn=_die_with_parent,
                        cwd=str(self.root),
                    )
                finally:
                    log.close()
                (self.root / "radicale.pid").write_text(str(self._proc.pid))
                _register(self)
                try:
                    deadline = time.monotonic() + 20
                    while True:
                        if self._proc.poll() is not None:
                            raise ServerError(f"radicale exited (rc={self._proc.returncode})\n{_tail(self.log_path)}")
                        try:
                            wait_for_port(self.host, self.port, timeout=0.2)
                            return self
                        except TimeoutError:
                            if time.monotonic() > deadline:
                                raise ServerError(
                                    f"radicale not listening on {self.port}\n{_tail(self.log_path)}"
                                ) from None
                except ServerError:
                    self._terminate()
                    if "in use" not in _tail(self.log_path, 5) or self._fixed_port:
                        raise
            raise ServerError(f"radicale failed to start\n{_tail(self.log_path)}")

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop(self) -> None:
        with self._lock:
            self._terminate()
            _unregister(self)
            if self.root is None:
                return
            if self._remove_root and not self.keep_data:
                if self.tmpdir is not None:
                    with contextlib.suppress(OSError):
                        shutil.copyfile(self.log_path, self.tmpdir / "radicale.log")
                        link = self.tmpdir / "radicale-runtime"
                        if link.is_symlink():
                            link.unlink()
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None

    def __enter__(self) -> "Radicale":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Radicale {self.host}:{self.port} root={self.root}>"

    # -- users and calendars ----------------------------------------------------
    def add_user(self, username: str, password: str) -> None:
        if not _USERNAME_RE.match(username) or ":" in password or "\n" in password:
            raise ValueError(f"bad username or password for htpasswd: {username!r}")
        with self._lock, open(self.users_file, "a") as f:
            f.write(f"{username}:{password}\n")

    def remove_user(self, username: str) -> None:
        with self._lock:
            lines = [ln for ln in self.users_file.read_text().splitlines() if not ln.startswith(username + ":")]
            self.users_file.write_text("".join(ln + "\n" for ln in lines))
            shutil.rmtree(self.storage / "collection-root" / username, ignore_errors=True)

    def calendar_url(self, username: str, calendar: str) -> str:
        return f"{self.url}{username}/{calendar}/"

    def request(
        self,
        method: str,
        path_or_url: str,
        username: str,
        password: str,
        body: bytes | str = b"",
        headers: dict | None = None,
        timeout: float = 30.0,
    ):
        """One plain HTTP request (urllib) as ``username``; returns (status, headers, body bytes)."""
        import urllib.error
        import urllib.request

        url = path_or_url if path_or_url.startswith("http") else self.url.rstrip("/") + path_or_url
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(url, data=data or None, method=method, headers=dict(headers or {}))
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def make_calendar(
        self,
        username: str,
        password: str,
        calendar: str = "calendar",
        display_name: str | None = None,
        components: Sequence[str] = ("VEVENT",),
    ) -> str:
        """MKCALENDAR /username/calendar/; returns the calendar's URL."""
        comps = "".join(f'<C:comp name="{c}"/>' for c in components)
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
            f"<D:displayname>{display_name or calendar}</D:displayname>"
            f"<C:supported-calendar-component-set>{comps}</C:supported-calendar-component-set>"
            "</D:prop></D:set></C:mkcalendar>"
        )
        status, _, text = self.request(
            "MKCALENDAR",
            f"/{username}/{calendar}/",
            username,
            password,
            body,
            {"Content-Type": "application/xml; charset=utf-8"},
        )
        if status not in (200, 201):
            raise ServerError(f"MKCALENDAR failed: {status} {text[:300]!r}")
        return self.calendar_url(username, calendar)

    def put_event(self, username: str, password: str, calendar: str, name: str, ics: bytes | str) -> str:
        """PUT one calendar object resource; returns its path."""
        path = f"/{username}/{calendar}/{name}"
        status, _, text = self.request(
            "PUT", path, username, password, ics, {"Content-Type": "text/calendar; charset=utf-8"}
        )
        if status not in (200, 201, 204):
            raise ServerError(f"PUT {path} failed: {status} {text[:300]!r}")
        return path

    def delete_event(self, username: str, password: str, calendar: str, name: str) -> None:
        path = f"/{username}/{calendar}/{name}"
        status, _, text = self.request("DELETE", path, username, password)
        if status not in (200, 204):
            raise ServerError(f"DELETE {path} failed: {status} {text[:300]!r}")
