"""A private PostgreSQL cluster (the Debian binaries) on a loopback port."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import threading
from pathlib import Path

from tests.servers.base import LOOPBACK, OWNER_MARKER, ServerBinaryMissing, ServerError, free_port
from tests.servers.processes import (
    _descendants,
    _ensure_system_user,
    _find_binary,
    _kill,
    _make_runtime_root,
    _pid_alive,
    _register,
    _self_marker,
    _tail,
    _unregister,
    _wait_dead,
    reap_orphans,
)


def _pg_bindir() -> str:
    cands = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        m = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/bin$", d)
        if m and os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            cands.append(((int(m.group(1)), int(m.group(2) or 0)), d))
    if cands:
        return max(cands)[1]
    initdb = _find_binary("initdb")
    if initdb and _find_binary("pg_ctl"):
        return os.path.dirname(initdb)
    raise ServerBinaryMissing(
        "PostgreSQL server binaries not found (looked for /usr/lib/postgresql/*/bin/initdb; "
        "Debian: apt-get install postgresql)"
    )


_DBNAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Postgres:
    """A private PostgreSQL cluster on 127.0.0.1 (trust auth, fsync off).

    ``Postgres(tmpdir=None, *, port=None, os_user="postgres", bindir=None,
    settings=None, keep_data=False, in_memory=False)``; ``.url`` is
    ``postgresql+psycopg2://postgres@127.0.0.1:PORT/postgres``.
    """

    def __init__(
        self,
        tmpdir: str | os.PathLike | None = None,
        *,
        port: int | None = None,
        os_user: str = "postgres",
        bindir: str | None = None,
        settings: dict | None = None,
        keep_data: bool = False,
        in_memory: bool = False,
    ):
        self.tmpdir = Path(tmpdir) if tmpdir is not None else None
        self.host = LOOPBACK
        self._fixed_port = port
        self.port: int = port or 0
        self.os_user = os_user
        self.bindir = bindir
        self.settings = {
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        self.settings.update(settings or {})
        self.keep_data = keep_data
        self.in_memory = in_memory
        self.root: Path | None = None
        self._remove_root = False
        self._started = False
        self._lock = threading.RLock()
        self._admin_conn = None  # see admin()

    user = "postgres"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def url_for(self, dbname: str = "postgres", driver: str = "psycopg2") -> str:
        drv = f"+{driver}" if driver else ""
        return f"postgresql{drv}://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    @property
    def dsn(self) -> str:
        """libpq DSN (for psycopg2.connect)."""
        return f"host={self.host} port={self.port} user={self.user} dbname=postgres"

    @property
    def running(self) -> bool:
        return _pid_alive(self.postmaster_pid)

    @property
    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError, TypeError):
            return None

    def log_tail(self, n: int = 40) -> str:
        return _tail(self.log_path, n)

    def _bin(self, name: str) -> str:
        return os.path.join(self.bindir, name)

    def _as_user(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            runuser = _find_binary("runuser")
            if not runuser:
                raise ServerBinaryMissing("runuser not found")
            argv = [runuser, "-u", self.os_user, "--", *argv]
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 120)
        # run from a directory the unprivileged user can enter
        return subprocess.run(argv, cwd=str(self.root), **kw)

    def start(self) -> "Postgres":
        with self._lock:
            if self._started and self.running:
                return self
            self.bindir = self.bindir or _pg_bindir()
            reap_orphans()
            if os.geteuid() == 0:
                pw = _ensure_system_user(self.os_user)
            else:
                pw = pwd.getpwuid(os.geteuid())
            if self.root is None:
                self.root, self._remove_root = _make_runtime_root(self.tmpdir, "postgres", self.in_memory)
                os.chown(self.root, pw.pw_uid, pw.pw_gid)
                for d in (self.data_dir, self.socket_dir):
                    d.mkdir(mode=0o700)
                    os.chown(d, pw.pw_uid, pw.pw_gid)
                self.log_path.touch()
                os.chown(self.log_path, pw.pw_uid, pw.pw_gid)
                r = self._as_user(
                    [
                        self._bin("initdb"),
                        "-D",
                        str(self.data_dir),
                        "-A",
                        "trust",
                        "-U",
                        self.user,
                        "-E",
                        "UTF8",
                        "--locale=C",
                        "--no-sync",
                        "--no-instructions",
                    ]
                )
                if r.returncode != 0 and "--no-instructions" in r.stderr:
                    r = self._as_user(
                        [
                            self._bin("initdb"),
                            "-D",
                            str(self.data_dir),
                            "-A",
                            "trust",
                            "-U",
                            self.user,
                            "-E",
                            "UTF8",
                            "--locale=C",
                            "--no-sync",
                        ]
                    )
                if r.returncode != 0:
                    raise ServerError(f"initdb failed: {r.stdout}\n{r.stderr}")
            else:  # restart (keep_data / caller-owned tmpdir)
                (self.root / OWNER_MARKER).write_text(_self_marker())
            attempts = 1 if self._fixed_port else 5
            err = ""
            for _ in range(attempts):
                if not self._fixed_port:
                    self.port = free_port()
                opts = [f"-p {self.port}", f"-k {self.socket_dir}", f"-c listen_addresses={self.host}"]
                opts += [f"-c {k}={v}" for k, v in self.settings.items()]
                r = self._as_user(
                    [
                        self._bin("pg_ctl"),
                        "-D",
                        str(self.data_dir),
                        "-l",
                        str(self.log_path),
                        "-o",
                        " ".join(opts),
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ]
                )
                if r.returncode == 0:
                    break
                err = f"{r.stdout}\n{r.stderr}\n{self.log_tail()}"
                if "already in use" not in err:
                    break
            else:
                r = None
            if r is None or r.returncode != 0:
                raise ServerError(f"postgres failed to start: {err}")
            self._started = True
            _register(self)
            return self

    def stop(self) -> None:
        with self._lock:
            self._close_admin()
            if self.root is None:
                return
            pid = self.postmaster_pid
            if pid and _pid_alive(pid):
                kids = _descendants(pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._as_user(
                        [self._bin("pg_ctl"), "-D", str(self.data_dir), "stop", "-m", "fast", "-w", "-t", "30"],
                        timeout=40,
                    )
                if not _wait_dead([pid], 10):
                    _kill([pid], signal.SIGQUIT)
                    if not _wait_dead([pid], 5):
                        _kill([pid])
                _kill(p for p in kids if _pid_alive(p))
                _wait_dead(kids, 5)
            self._started = False
            _unregister(self)
            if self._remove_root and not self.keep_data:
                if self.tmpdir is not None:
                    with contextlib.suppress(OSError):
                        shutil.copyfile(self.log_path, self.tmpdir / "postgres.log")
                        link = self.tmpdir / "postgres-runtime"
                        if link.is_symlink():
                            link.unlink()
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
            else:
                with contextlib.suppress(OSError):
                    (self.root / OWNER_MARKER).write_text("keep\n")

    def __enter__(self) -> "Postgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Postgres {self.host}:{self.port} root={self.root}>"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL with psql (as superuser, over TCP); returns stdout."""
        r = subprocess.run(
            [
                self._bin("psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-A",
                "-t",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                dbname,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode != 0:
            raise ServerError(f"psql failed: {r.stderr.strip()}")
        return r.stdout

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE) on a connection kept
        open for it: the suite makes and drops a database or two per test, and a psql process
        each time cost 20-55 ms of a busy machine (measured), a statement here 10-20 ms."""
        import psycopg2

        with self._lock:
            for attempt in (1, 2):
                conn = self._admin_conn
                try:
                    if conn is None or conn.closed:
                        conn = self._admin_conn = psycopg2.connect(self.dsn, connect_timeout=30)
                        conn.autocommit = True
                    with conn.cursor() as cur:
                        cur.execute(sql)
                    return
                except (psycopg2.OperationalError, psycopg2.InterfaceError):
                    self._close_admin()
                    if attempt == 2:  # the server restarted under the connection: once more on a new one
                        raise

    def _close_admin(self) -> None:
        conn, self._admin_conn = self._admin_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def create_database(self, name: str | None = None, driver: str = "psycopg2", template: str | None = None) -> str:
        """CREATE DATABASE (random name if None; a copy of `template` if given) and return its SQLAlchemy URL."""
        name = name or "t_" + secrets.token_hex(6)
        for n in (name, template or name):
            if not _DBNAME_RE.match(n):
                raise ValueError(f"database name must match {_DBNAME_RE.pattern}: {n!r}")
        self.admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url_for(name, driver)

    def drop_database(self, name: str) -> None:
        if not _DBNAME_RE.match(name):
            raise ValueError(f"bad database name {name!r}")
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
