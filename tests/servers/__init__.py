"""Real servers on loopback for tests and benchmarks.

Plain helpers (no pytest dependency) so they can be used both from
``tests/conftest.py`` and from bench scripts run from the repo root::

    from tests.servers import Dovecot, Postgres, FaultProxy

    with Dovecot() as dv:
        dv.add_user("rep1", "secret")
        dv.deliver("rep1", b"Subject: hi\\n\\nbody\\n")
        ...  # IMAP on dv.host:dv.port

Every server gets its own config/data directory and a free loopback port.
Servers that drop privileges (Dovecot's mail processes run as ``vmail``,
Postgres as ``postgres``) need every ancestor of their data directory to be
traversable by that user.  pytest's ``tmp_path`` lives below a 0700
directory, so when the given ``tmpdir`` is not traversable the runtime
directory is created as ``/tmp/threadline-<kind>-XXXX`` instead -- or in
``/dev/shm`` with ``in_memory=True`` -- a ``<kind>-runtime`` symlink and,
after stop, a copy of the server log are left in ``tmpdir``, and the
runtime directory is removed again by ``stop()`` (unless ``keep_data``).
A traversable ``tmpdir`` (e.g. ``/srv/bench``) holds the runtime directory
itself and is left alone.

Runtime directories carry a ``threadline-owner`` marker (pid + start time of
the creating process).  ``reap_orphans()`` — called by every ``start()`` —
stops servers and deletes runtime directories whose owner process is gone,
so a SIGKILLed test run does not leave daemons behind for the next run.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime as _dt
import errno
import glob
import itertools
import os
import pwd
import re
import secrets
import selectors
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

__all__ = [
    "AppServer",
    "Radicale",
    "ServerError",
    "ServerBinaryMissing",
    "free_port",
    "wait_for_port",
    "reap_orphans",
    "memory_tmpdir",
    "Dovecot",
    "Postgres",
    "FaultProxy",
]

LOOPBACK = "127.0.0.1"
OWNER_MARKER = "threadline-owner"
RUNTIME_PREFIX = "threadline-"
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


# ---------------------------------------------------------------------------
# process / filesystem helpers
# ---------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) from /proc/PID/stat, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces/parens: split after the last ')'
    rest = data[data.rfind(")") + 2 :].split()
    return rest[0], int(rest[1]), int(rest[19])


def _pid_alive(pid: int | None) -> bool:
    """True if pid exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def _proc_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pids_with_title_prefix(prefix: str) -> list[int]:
    out = []
    for p in _all_pids():
        cmd = _proc_cmdline(p)
        if cmd and cmd[0].startswith(prefix) and _pid_alive(p):
            out.append(p)
    return out


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in _all_pids():
        st = _proc_stat(p)
        if st:
            children.setdefault(st[1], []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _wait_dead(pids: Iterable[int], timeout: float) -> bool:
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while any(_pid_alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _kill(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


def _find_binary(name: str, extra_dirs: Sequence[str] = ()) -> str | None:
    path = shutil.which(name)
    if path:
        return path
    for d in list(extra_dirs) + list(_SBIN_DIRS):
        cand = os.path.join(d, name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def _others_can_traverse(path: Path) -> bool:
    path = Path(path).resolve()
    for p in [path, *path.parents]:
        try:
            if not os.stat(p).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _self_marker() -> str:
    st = _proc_stat(os.getpid())
    return f"{os.getpid()} {st[2] if st else 0}\n"


def _marker_owner_alive(root: Path) -> bool | None:
    """True/False for a runtime dir with a marker, None without a marker."""
    try:
        text = (root / OWNER_MARKER).read_text()
        if text.strip() == "keep":
            return True  # stopped with keep_data: never reaped
        pid_s, start_s = text.split()
    except (OSError, ValueError):
        return None
    st = _proc_stat(int(pid_s))
    return st is not None and st[0] not in ("Z", "X") and str(st[2]) == start_s


SHM_DIR = "/dev/shm"


def memory_tmpdir(min_free: int = 1 << 30) -> str | None:
    """``/dev/shm`` if it is a tmpfs with at least ``min_free`` bytes free, else None.

    Pass ``in_memory=True`` to Dovecot/Postgres to put their data there:
    creating 100k Maildir files on a busy/cold ext4 can take a minute,
    on tmpfs a few seconds.  (Docker's default /dev/shm is only 64 MB.)
    """
    try:
        if not os.path.isdir(SHM_DIR) or not _others_can_traverse(Path(SHM_DIR)):
            return None
        st = os.statvfs(SHM_DIR)
        with open("/proc/mounts") as f:
            is_tmpfs = any(line.split()[1] == SHM_DIR and line.split()[2] == "tmpfs" for line in f)
    except OSError:
        return None
    if not is_tmpfs or st.f_bavail * st.f_frsize < min_free:
        return None
    return SHM_DIR


def _make_runtime_root(tmpdir: str | os.PathLike | None, kind: str,
                       in_memory: bool = False) -> tuple[Path, bool]:
    """Create the runtime dir.  Returns (root, remove_on_stop)."""
    prefix = f"{RUNTIME_PREFIX}{kind}-"
    tmpdir = Path(tmpdir) if tmpdir is not None else None
    if tmpdir is not None:
        tmpdir.mkdir(parents=True, exist_ok=True)
    if in_memory:
        parent = memory_tmpdir(0)
        if parent is None:
            raise ServerError(f"in_memory=True but {SHM_DIR} is not a usable tmpfs")
        root, remove = Path(tempfile.mkdtemp(prefix=prefix, dir=parent)), True
    elif (tmpdir is not None and _others_can_traverse(tmpdir)
          # keep unix socket paths short (sun_path is 108 bytes)
          and len(str(tmpdir.resolve())) < 60):
        root, remove = Path(tempfile.mkdtemp(prefix=prefix, dir=tmpdir)), False
    else:
        root, remove = Path(tempfile.mkdtemp(prefix=prefix)), True
    if remove and tmpdir is not None:
        link = tmpdir / f"{kind}-runtime"
        with contextlib.suppress(OSError):
            if link.is_symlink():
                link.unlink()
            link.symlink_to(root)
    os.chmod(root, 0o755)
    (root / OWNER_MARKER).write_text(_self_marker())
    return root, remove


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise ServerError(f"system user {name!r} is missing and we are not root to create it")
    useradd = _find_binary("useradd")
    if not useradd:
        raise ServerBinaryMissing("useradd not found (needed to create system user %r)" % name)
    r = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home",
         "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True,
    )
    # exit code 9 = already exists (created concurrently by another process)
    if r.returncode not in (0, 9):
        raise ServerError(f"useradd {name} failed: {r.stderr.strip()}")
    return pwd.getpwnam(name)


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# Servers started by this process that have not been stopped yet: stopped at
# interpreter exit as a safety net for bench scripts that forget/crash.
_live_servers: "set[object]" = set()
_live_lock = threading.Lock()


def _register(server) -> None:
    server._owner_pid = os.getpid()
    with _live_lock:
        _live_servers.add(server)


def _unregister(server) -> None:
    with _live_lock:
        _live_servers.discard(server)


@atexit.register
def _stop_all_at_exit() -> None:
    with _live_lock:
        servers = list(_live_servers)
    for s in servers:
        if getattr(s, "_owner_pid", None) != os.getpid():
            continue  # a forked child exiting must not stop the parent's servers
        with contextlib.suppress(Exception):
            s.stop()


def reap_orphans(tmp: str | None = None) -> list[str]:
    """Stop servers/remove runtime dirs left behind by dead processes.

    Cleans ``/tmp/threadline-*`` directories whose ``threadline-owner``
    process no longer exists (stopping the Dovecot/Postgres inside first),
    and kills threadline Dovecot/Postgres processes whose runtime directory
    has vanished.  Returns the list of directories/pids cleaned.
    """
    cleaned: list[str] = []
    dirs = [tmp] if tmp else [tempfile.gettempdir(), SHM_DIR]
    for d in (d for parent in dirs for d in glob.glob(os.path.join(parent, RUNTIME_PREFIX + "*"))):
        root = Path(d)
        if not root.is_dir() or root.is_symlink():
            continue
        alive = _marker_owner_alive(root)
        if alive is None:
            # no marker: only clean very old dirs (marker is written right after mkdtemp)
            with contextlib.suppress(OSError):
                if time.time() - root.stat().st_mtime < 3600:
                    continue
        elif alive:
            continue
        _kill_servers_in(root)
        shutil.rmtree(root, ignore_errors=True)
        cleaned.append(d)
    # processes whose runtime dir is gone altogether
    marker = os.sep + RUNTIME_PREFIX
    for pid in _all_pids():
        cmd = _proc_cmdline(pid)
        if len(cmd) < 3 or not _pid_alive(pid):
            continue
        exe = os.path.basename(cmd[0])
        path = None
        if exe == "dovecot" and cmd[1] == "-c":
            path = cmd[2]
        elif exe == "postgres" and "-D" in cmd[:-1]:
            path = cmd[cmd.index("-D") + 1]
        if path and marker in path and not os.path.exists(path):
            root = Path(path).parent
            kids = _descendants(pid) + _pids_with_title_prefix(f"dovecot-{root.name}/")
            _kill([pid], signal.SIGTERM if exe == "dovecot" else signal.SIGQUIT)
            if not _wait_dead([pid], 5):
                _kill([pid])
            _kill(kids)
            _wait_dead(kids, 2)
            cleaned.append(str(pid))
    return cleaned


def _kill_servers_in(root: Path) -> None:
    """Stop whatever Dovecot/Postgres runs out of runtime dir ``root``."""
    for pf, sig in ((root / "run" / "master.pid", signal.SIGTERM),
                    (root / "data" / "postmaster.pid", signal.SIGQUIT)):
        try:
            pid = int(pf.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if not _pid_alive(pid) or str(root) not in " ".join(_proc_cmdline(pid)):
            continue
        kids = _descendants(pid)
        _kill([pid], sig)
        if not _wait_dead([pid], 5):
            _kill([pid])
        _kill(kids)
        _wait_dead(kids, 2)
    stray = _pids_with_title_prefix(f"dovecot-{root.name}/")
    _kill(stray)
    _wait_dead(stray, 2)


# ---------------------------------------------------------------------------
# Dovecot
# ---------------------------------------------------------------------------

_SPECIAL_USE_MAILBOXES = (
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
    ("All Mail", "\\All"),  # Gmail's shape: every message the rep kept, labels or not
    ("Starred", "\\Flagged"),
)

_FLAG_LETTERS = {
    "\\draft": "D",
    "\\flagged": "F",
    "\\answered": "R",
    "\\seen": "S",
    "\\deleted": "T",
}

_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]*$")


def imap_utf7_encode(name: str) -> str:
    """RFC 3501 modified UTF-7 (what Dovecot stores on disk for Maildir++)."""
    out, buf = [], []

    def flush():
        if buf:
            b = "".join(buf).encode("utf-16-be")
            out.append("&" + base64.b64encode(b).decode("ascii").rstrip("=").replace("/", ",") + "-")
            buf.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


def _to_timestamp(when) -> float:
    if when is None:
        return time.time()
    if isinstance(when, (int, float)):
        return float(when)
    if isinstance(when, _dt.datetime):
        return when.timestamp()  # naive = local time (round-trips with imapclient)
    if isinstance(when, _dt.date):
        return _dt.datetime(when.year, when.month, when.day).timestamp()
    raise TypeError(f"internaldate must be datetime/date/epoch/None, not {type(when).__name__}")


def _maildir_flags(flags) -> str:
    """'' / 'SF' (maildir letters) / '\\\\Seen \\\\Flagged' / ['\\\\Seen'] -> sorted letters."""
    if not flags:
        return ""
    if isinstance(flags, (bytes, bytearray)):
        flags = flags.decode()
    if isinstance(flags, str):
        if "\\" not in flags:
            letters = set(flags)
            bad = letters - set("DFPRST")
            if bad:
                raise ValueError(f"unknown maildir flag letters {sorted(bad)}")
            return "".join(sorted(letters))
        flags = flags.split()
    letters = set()
    for fl in flags:
        if isinstance(fl, bytes):
            fl = fl.decode()
        try:
            letters.add(_FLAG_LETTERS[fl.lower()])
        except KeyError:
            raise ValueError(f"unsupported flag {fl!r} (keywords are not supported by deliver)") from None
    return "".join(sorted(letters))


class Dovecot:
    """A private Dovecot IMAP server on 127.0.0.1 backed by Maildir++.

    ``Dovecot(tmpdir=None, special_use=False, *, port=None, separator="/",
    autocreate_special_use=False, max_userip_connections=100,
    idle_check_interval=1, auth_failure_delay=0, mail_user="vmail",
    extra_config="", keep_data=False, in_memory=False)``

    - ``special_use=True`` declares Sent/Drafts/Trash/Junk/Archive with
      ``special_use`` flags (Dovecot then also advertises the SPECIAL-USE
      capability).  The flags show up in LIST only once a mailbox exists —
      create it with ``create_folder`` or pass ``autocreate_special_use=True``
      (``auto = subscribe``: created at first login).
    - Hierarchy separator is ``/`` by default; on disk ``A/B`` is ``.A.B``
      (so ``.`` is not allowed inside folder names).  Pass ``separator="."``
      for a Courier-like layout.
    - ``in_memory=True`` puts config, sockets and Maildirs under /dev/shm
      (see ``memory_tmpdir()``); much faster for 10k+ message mailboxes.
    - Users live in one passwd-file each (``users/<name>``) because Dovecot
      re-stats a passwd-file at most once per second.
    - IDLE: Dovecot notices Maildir changes via inotify and pushes EXISTS
      ~0.5 s after delivery; ``mailbox_idle_check_interval`` (1 s) is only
      the fallback poll.
    - UIDVALIDITY: deleting a folder's directory and recreating it (see
      ``recreate_folder``) yields a new, larger UIDVALIDITY on next SELECT,
      taken from the per-user ``dovecot-uidvalidity`` counter.  A session
      that has the folder *selected* meanwhile gets
      ``* BYE IMAP session state is inconsistent, please relogin.``
    """

    def __init__(
        self,
        tmpdir: str | os.PathLike | None = None,
        special_use: bool = False,
        *,
        port: int | None = None,
        separator: str = "/",
        autocreate_special_use: bool = False,
        max_userip_connections: int = 100,
        idle_check_interval: int = 1,
        auth_failure_delay: int = 0,
        mail_user: str = "vmail",
        extra_config: str = "",
        keep_data: bool = False,
        in_memory: bool = False,
    ):
        if separator not in ("/", "."):
            raise ValueError("separator must be '/' or '.'")
        self.tmpdir = Path(tmpdir) if tmpdir is not None else None
        self.special_use = special_use
        self.autocreate_special_use = autocreate_special_use
        self.separator = separator
        self.max_userip_connections = max_userip_connections
        self.idle_check_interval = idle_check_interval
        self.auth_failure_delay = auth_failure_delay
        self.mail_user = mail_user
        self.extra_config = extra_config
        self.keep_data = keep_data
        self.in_memory = in_memory
        self.host = LOOPBACK
        self._fixed_port = port
        self.port: int = port or 0
        self.root: Path | None = None
        self._remove_root = False
        self._master_pid: int | None = None
        self._lock = threading.RLock()
        self._users: dict[str, str] = {}
        self._last_tv = (0, 0)
        self._users_mtime = 0
        self._ever_users: set[str] = set()
        self._uid = self._gid = -1
        self.dovecot_bin = self.doveadm_bin = None

    # -- paths ---------------------------------------------------------------
    @property
    def conf_path(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def base_dir(self) -> Path:
        return self.root / "run"

    @property
    def mail_root(self) -> Path:
        return self.root / "mail"

    @property
    def users_dir(self) -> Path:
        """passwd-file per user: ``users/<name>``."""
        return self.root / "users"

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def running(self) -> bool:
        return _pid_alive(self._master_pid)

    @property
    def users(self) -> dict[str, str]:
        return dict(self._users)

    def log_tail(self, n: int = 40) -> str:
        return _tail(self.log_path, n)

    # -- lifecycle -------------------------------------------------------------
    @staticmethod
    def find_binaries() -> tuple[str, str]:
        dovecot = _find_binary("dovecot")
        doveadm = _find_binary("doveadm")
        if not dovecot or not doveadm:
            raise ServerBinaryMissing(
                "Dovecot is not installed (need the `dovecot` and `doveadm` binaries; "
                "Debian: apt-get install dovecot-imapd)"
            )
        return dovecot, doveadm

    def _config(self) -> str:
        r = self.root
        mailboxes = ""
        if self.special_use:
            auto = "subscribe" if self.autocreate_special_use else "no"
            mailboxes = "".join(
                f'  mailbox "{name}" {{\n    special_use = {flag}\n    auto = {auto}\n  }}\n'
                for name, flag in _SPECIAL_USE_MAILBOXES
            )
        return f"""\
# generated by tests/servers.py -- private test instance
protocols = imap
listen = {LOOPBACK}
base_dir = {r}/run
state_dir = {r}/state
instance_name = {r.name}
log_path = {r}/dovecot.log
info_log_path = {r}/dovecot.log
debug_log_path = {r}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = {self.auth_failure_delay} secs
first_valid_uid = 1
default_internal_user = {self.mail_user}
default_internal_group = {self.mail_user}
default_login_user = {self.mail_user}
mail_location = maildir:{r}/mail/%u
mail_fsync = never
# LIST reads the Maildir++ root every time, so folders created/deleted on
# disk by the helpers below show up even in already-open sessions
mailbox_list_index = no
mail_max_userip_connections = {self.max_userip_connections}
mailbox_idle_check_interval = {self.idle_check_interval} secs
passdb {{
  driver = passwd-file
  # one file per user: Dovecot stats a passwd-file at most once per second,
  # so users added to a single shared file could stay invisible for ~1s
  args = scheme=PLAIN username_format=%u {r}/users/%u
}}
userdb {{
  driver = static
  args = uid={self.mail_user} gid={self.mail_user} home={r}/mail/%u
}}
namespace inbox {{
  inbox = yes
  prefix =
  separator = {self.separator}
{mailboxes}}}
service imap-login {{
  inet_listener imap {{
    address = {LOOPBACK}
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 1
  client_limit = 1000
}}
service imap {{
  process_min_avail = 2
  process_limit = 1024
}}
service anvil {{
  # no brute-force penalty for 127.0.0.1 (tests do fail logins on purpose)
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{self.extra_config}
"""

    def start(self) -> "Dovecot":
        with self._lock:
            if self.running:
                return self
            self.dovecot_bin, self.doveadm_bin = self.find_binaries()
            if os.geteuid() != 0:
                raise ServerError("Dovecot test server needs root (it setuid()s to the mail user)")
            reap_orphans()
            pw = _ensure_system_user(self.mail_user)
            self._uid, self._gid = pw.pw_uid, pw.pw_gid
            if self.root is None:
                self.root, self._remove_root = _make_runtime_root(self.tmpdir, "dovecot", self.in_memory)
                for d in ("run", "state"):
                    (self.root / d).mkdir(exist_ok=True)
                self.mail_root.mkdir(exist_ok=True)
                os.chown(self.mail_root, self._uid, self._gid)
                self.users_dir.mkdir(exist_ok=True)
            else:  # restart (keep_data / caller-owned tmpdir)
                (self.root / OWNER_MARKER).write_text(_self_marker())
            attempts = 1 if self._fixed_port else 5
            last = ""
            for _ in range(attempts):
                if not self._fixed_port:
                    self.port = free_port()
                self.conf_path.write_text(self._config())
                # not capture_output: the daemonized master would keep the pipes open
                with tempfile.TemporaryFile("w+") as out:
                    r = subprocess.run(
                        [self.dovecot_bin, "-c", str(self.conf_path)],
                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=60,
                    )
                    out.seek(0)
                    last = out.read().strip()
                if r.returncode == 0:
                    break
                if "in use" not in last and "in use" not in self.log_tail(5):
                    raise ServerError(f"dovecot failed to start (rc={r.returncode}): {last}\n{self.log_tail()}")
            else:
                raise ServerError(f"dovecot failed to start: {last}\n{self.log_tail()}")
            _register(self)
            # the daemonized master writes master.pid slightly after `dovecot` returns
            deadline = time.monotonic() + 10
            while self._read_master_pid() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            self._master_pid = self._read_master_pid()
            if self._master_pid is None:
                self.stop()
                raise ServerError(f"dovecot did not write master.pid\n{self.log_tail()}")
            try:
                self._wait_ready(15)
            except Exception:
                self.stop()
                raise
            return self

    def _read_master_pid(self) -> int | None:
        try:
            pid = int((self.base_dir / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if str(self.conf_path) in " ".join(_proc_cmdline(pid)) else None

    def _instance_pids(self) -> list[int]:
        """Processes of this instance: children are titled 'dovecot-<instance_name>/...'."""
        if self.root is None:
            return []
        return _pids_with_title_prefix(f"dovecot-{self.root.name}/")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        err: object = None
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=2) as s:
                    s.settimeout(2)
                    if s.recv(1024).startswith(b"* OK"):
                        return
            except OSError as e:
                err = e
            if self._master_pid and not _pid_alive(self._master_pid):
                raise ServerError(f"dovecot died during startup\n{self.log_tail()}")
            time.sleep(0.05)
        raise ServerError(f"dovecot not ready on {self.host}:{self.port} ({err})\n{self.log_tail()}")

    def stop(self) -> None:
        with self._lock:
            if self.root is None:
                return
            pid = self._master_pid or self._read_master_pid()
            if pid and _pid_alive(pid):
                kids = _descendants(pid)
                proc = subprocess.Popen(
                    [self.doveadm_bin, "-c", str(self.conf_path), "stop"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                # The master needs ~1s to shut down (it polls for its children
                # to exit).  Signalling the children ourselves does not help
                # reliably: if they die before the master got its SIGTERM it
                # waits for them for 6s instead.
                if not _wait_dead([pid], 10):
                    kids += _descendants(pid)
                    _kill([pid])
                    _wait_dead([pid], 5)
                # leftovers (imap processes etc. reparented to init)
                kids = set(kids) | set(self._instance_pids())
                _kill(p for p in kids if _pid_alive(p))
                _wait_dead(kids, 5)
                # `doveadm stop` only returns once init has reaped the master,
                # which can take seconds in some containers; the work is done.
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            # anything of this instance still around (e.g. master pid unknown)
            leftovers = self._instance_pids()
            if leftovers:
                _kill(leftovers)
                _wait_dead(leftovers, 5)
            self._master_pid = None
            _unregister(self)
            if self.root is not None and self._remove_root and not self.keep_data:
                if self.tmpdir is not None:
                    with contextlib.suppress(OSError):
                        shutil.copyfile(self.log_path, self.tmpdir / "dovecot.log")
                        link = self.tmpdir / "dovecot-runtime"
                        if link.is_symlink():
                            link.unlink()
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
                self._users.clear()
                self._ever_users.clear()
            elif self.root is not None:
                with contextlib.suppress(OSError):
                    (self.root / OWNER_MARKER).write_text("keep\n")

    def __enter__(self) -> "Dovecot":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Dovecot {self.host}:{self.port} root={self.root} running={self.running}>"

    # -- doveadm ---------------------------------------------------------------
    def doveadm(self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
        """Run ``doveadm -c CONF ARGS...`` (text mode); raises ServerError on failure if check."""
        if self.root is None:
            raise ServerError("Dovecot not started")
        r = subprocess.run(
            [self.doveadm_bin or self.find_binaries()[1], "-c", str(self.conf_path), *map(str, args)],
            capture_output=True, text=True, timeout=timeout, input=input,
        )
        if check and r.returncode != 0:
            raise ServerError(f"doveadm {' '.join(map(str, args))} failed (rc={r.returncode}): {r.stderr.strip()}")
        return r

    def mailbox_status(self, user: str, folder: str = "INBOX",
                       fields: str = "messages uidvalidity uidnext highestmodseq") -> dict[str, int]:
        """Server-side view via ``doveadm mailbox status`` (syncs the Maildir)."""
        out = self.doveadm("mailbox", "status", "-u", user, fields, folder).stdout
        res = {}
        for tok in out.split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                res[k] = int(v) if v.isdigit() else v
        return res

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        return int(self.mailbox_status(user, folder, "uidvalidity")["uidvalidity"])

    def kick(self, user: str) -> None:
        """Disconnect all IMAP sessions of ``user``."""
        if self.running:
            self.doveadm("kick", user, check=False)

    # -- users -----------------------------------------------------------------
    def _write_user(self, name: str) -> None:
        """(Re)write ``users/<name>`` (passwd-file, PLAIN scheme) or delete it."""
        path = self.users_dir / name
        if name not in self._users:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        tmp = self.users_dir / f".{name}.tmp"
        # extra field nodelay: failed logins are answered without extra delay
        tmp.write_text(f"{name}:{{PLAIN}}{self._users[name]}::::::nodelay\n")
        os.chmod(tmp, 0o644)
        # Dovecot re-reads a passwd-file only when mtime (whole seconds) or
        # size changed -- and at most once a second -- so re-passwording an
        # existing user needs a strictly newer mtime to be noticed at all.
        with self._lock:
            stamp = max(int(time.time()), self._users_mtime + 1)
            self._users_mtime = stamp
        os.utime(tmp, (stamp, stamp))
        os.replace(tmp, path)

    def add_user(self, name: str, password: str) -> Path:
        """Add (or re-password) a user; creates its Maildir.  Returns the Maildir path."""
        if not _USERNAME_RE.match(name):
            raise ValueError(f"unsupported user name {name!r}")
        if any(c in password for c in ":\n\r\0") or not password:
            raise ValueError("password must be non-empty and contain no ':' or newlines")
        if self.root is None:
            raise ServerError("start() the Dovecot first")
        with self._lock:
            reused = name in self._ever_users and self._users.get(name) != password
            self._users[name] = password
            self._ever_users.add(name)
            self._write_user(name)
            if reused:
                # Dovecot stats a passwd-file at most once per second: wait for
                # the next second so the new password is guaranteed to be seen.
                time.sleep(1.05 - time.time() % 1)
            md = self.maildir(name)
            self._makedirs_owned(md)
            for sub in ("cur", "new", "tmp"):
                self._makedirs_owned(md / sub)
        return md

    def remove_user(self, name: str) -> None:
        """Kick the user's sessions, drop it from the passwd-file and delete its Maildir."""
        with self._lock:
            self.kick(name)
            self._users.pop(name, None)
            if self.root is not None:
                self._write_user(name)
                shutil.rmtree(self.maildir(name), ignore_errors=True)

    # -- maildir ----------------------------------------------------------------
    def maildir(self, user: str) -> Path:
        if self.root is None:
            raise ServerError("Dovecot not started")
        return self.mail_root / user

    def folder_path(self, user: str, folder: str = "INBOX") -> Path:
        """Maildir++ directory of an IMAP folder name (INBOX = user root)."""
        if folder.upper() == "INBOX":
            return self.maildir(user)
        parts = folder.split(self.separator)
        if any(not p for p in parts):
            raise ValueError(f"bad folder name {folder!r}")
        if self.separator == "/" and any("." in p for p in parts):
            raise ValueError(f"'.' is not allowed in folder names with Maildir++ ({folder!r})")
        return self.maildir(user) / ("." + ".".join(imap_utf7_encode(p) for p in parts))

    def _makedirs_owned(self, path: Path) -> None:
        path = Path(path)
        missing = []
        p = path
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d, 0o700)
            os.chown(d, self._uid, self._gid)

    def _ensure_folder(self, user: str, folder: str) -> Path:
        d = self.folder_path(user, folder)
        if not (d / "tmp").is_dir() or not (d / "cur").is_dir() or not (d / "new").is_dir():
            for sub in ("cur", "new", "tmp"):
                self._makedirs_owned(d / sub)
            if folder.upper() != "INBOX":
                mf = d / "maildirfolder"
                if not mf.exists():
                    mf.touch()
                    os.chown(mf, self._uid, self._gid)
        return d

    def create_folder(self, user: str, name: str, subscribe: bool = False, parents: bool = True) -> Path:
        """Create a Maildir++ folder directly on disk (Dovecot sees it on next LIST).

        With ``parents`` (default) missing parents of ``A/B`` are created too;
        otherwise Dovecot lists ``A`` as ``\\Noselect`` (``\\NonExistent``).
        ``subscribe`` uses doveadm (server must be running).
        """
        parts = name.split(self.separator)
        names = [self.separator.join(parts[: i + 1]) for i in range(len(parts))] if parents else [name]
        for n in names:
            d = self._ensure_folder(user, n)
            if subscribe:
                self.doveadm("mailbox", "subscribe", "-u", user, n)
        return d

    def delete_folder(self, user: str, name: str) -> None:
        """Delete a folder's Maildir++ directory incl. messages, dovecot-uidlist and
        indexes.  Child folders (separate ``.Name.Child`` dirs) are left alone."""
        if name.upper() == "INBOX":
            raise ValueError("cannot delete INBOX; use recreate_folder(user, 'INBOX')")
        d = self.folder_path(user, name)
        for _ in range(5):  # a concurrent Dovecot process may write into it meanwhile
            try:
                shutil.rmtree(d)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.ENOTEMPTY:
                    raise
                time.sleep(0.05)
        shutil.rmtree(d, ignore_errors=True)

    def recreate_folder(self, user: str, name: str, method: str = "fs") -> Path:
        """Delete and re-create a folder (empty) so that it gets a new UIDVALIDITY.

        ``method="fs"`` removes the Maildir++ dir (messages, dovecot-uidlist,
        indexes) and mkdirs it again; Dovecot assigns the next value from the
        user's ``dovecot-uidvalidity`` counter when it next opens the folder,
        so the new UIDVALIDITY is always different (and greater).  For INBOX
        the messages and uidlist/index files inside the user root are removed.
        ``method="doveadm"`` uses ``doveadm mailbox delete`` + ``create``
        (server must be running; not for INBOX).
        """
        if method == "doveadm":
            if name.upper() == "INBOX":
                raise ValueError("doveadm cannot delete INBOX; use method='fs'")
            self.doveadm("mailbox", "delete", "-u", user, name, check=False)
            self.doveadm("mailbox", "create", "-u", user, name)
            return self.folder_path(user, name)
        if method != "fs":
            raise ValueError("method must be 'fs' or 'doveadm'")
        if name.upper() == "INBOX":
            root = self.maildir(user)
            for sub in ("cur", "new", "tmp"):
                shutil.rmtree(root / sub, ignore_errors=True)
            for f in root.iterdir():
                if f.name in ("dovecot-uidlist", "dovecot-keywords") or f.name.startswith("dovecot.index"):
                    with contextlib.suppress(OSError):
                        f.unlink()
            return self._ensure_folder(user, "INBOX")
        self.delete_folder(user, name)
        return self._ensure_folder(user, name)

    def _next_tv(self) -> tuple[int, int]:
        # Same scheme as Dovecot's maildir_filename_generate(): secs.M<usecs>P<pid>.<host>,
        # strictly increasing so Dovecot assigns UIDs in delivery order
        # (it sorts new files by the time in their names).  Caller holds _lock.
        now = time.time()
        tv = (int(now), int((now % 1) * 1_000_000))
        if tv <= self._last_tv:
            sec, us = self._last_tv
            us += 1
            if us == 1_000_000:
                sec, us = sec + 1, 0
            tv = (sec, us)
        self._last_tv = tv
        return tv

    class _FolderFds:
        """Open dir fds of a Maildir folder's cur/ and tmp/ (saves path lookups)."""

        def __init__(self, d: Path):
            self.path = str(d)
            self.cur = os.open(os.path.join(self.path, "cur"), os.O_RDONLY | os.O_DIRECTORY)
            self.tmp = os.open(os.path.join(self.path, "tmp"), os.O_RDONLY | os.O_DIRECTORY)

        def close(self) -> None:
            os.close(self.cur)
            os.close(self.tmp)

    _O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)

    def _write_message(self, f: "Dovecot._FolderFds", base: str, raw: bytes, ts: float,
                       letters: str, atomic: bool) -> str:
        # S= physical size, W= RFC822.SIZE (CRLF) -- Dovecot trusts these and
        # does not need to read the file to answer RFC822.SIZE
        vsize = len(raw) + raw.count(b"\n") - raw.count(b"\r\n")
        name = f"{base},S={len(raw)},W={vsize}:2,{letters}"
        if atomic:
            fd = os.open(base, self._O_NEW, 0o600, dir_fd=f.tmp)
        else:
            fd = os.open(name, self._O_NEW, 0o600, dir_fd=f.cur)
        try:
            n = os.write(fd, raw)
            if n < len(raw):
                view = memoryview(raw)[n:]
                while view:
                    view = view[os.write(fd, view):]
            os.fchown(fd, self._uid, self._gid)
            os.utime(fd, (ts, ts))
        finally:
            os.close(fd)
        if atomic:
            os.rename(base, name, src_dir_fd=f.tmp, dst_dir_fd=f.cur)
        return name

    def deliver(self, user: str, raw: bytes, folder: str = "INBOX",
                internaldate: "_dt.datetime | float | None" = None, flags="") -> Path:
        """Write one message into the user's Maildir (``cur/``, owned by the mail user).

        ``internaldate`` becomes the file mtime = IMAP INTERNALDATE (naive
        datetimes are local time).  ``flags``: maildir letters (``"SF"``) or
        IMAP system flags (``"\\\\Seen \\\\Flagged"`` or a list).  Missing folders
        are created.  The file is written to ``tmp/`` and renamed into
        ``cur/``, so a concurrent IMAP session never sees a partial message.
        Returns the message file path.
        """
        return Path(self.deliver_many(user, [(raw, folder, internaldate, flags)])[0])

    def deliver_many(self, user: str, items: Iterable, *, atomic: bool = True) -> list[str]:
        """Bulk version of ``deliver``; returns the file paths (as ``str``).

        ``items``: iterable of ``raw_bytes`` or tuples ``(raw, folder="INBOX",
        internaldate=None, flags="")``.  UIDs are assigned in iteration order
        (per folder), regardless of internaldate.  About 30-60 us per message
        on an idle machine (100k messages: a few seconds; a busy or cold disk
        can be several times slower -- ``Dovecot("/dev/shm")`` keeps the
        Maildirs in RAM).  ``atomic=False`` writes straight into ``cur/``
        instead of ``tmp/`` + rename (~40% faster); only safe while no IMAP
        session is syncing that folder, e.g. for preloading.
        """
        fds: dict[str, Dovecot._FolderFds] = {}
        flag_cache: dict = {}
        paths: list[str] = []
        pid = os.getpid()
        now_ts = None
        try:
            with self._lock:
                for item in items:
                    if isinstance(item, (bytes, bytearray, memoryview, str)):
                        raw, folder, when, flags = item, "INBOX", None, ""
                    else:
                        n = len(item)
                        raw = item[0]
                        folder = (item[1] if n > 1 else None) or "INBOX"
                        when = item[2] if n > 2 else None
                        flags = item[3] if n > 3 else ""
                    if isinstance(raw, str):
                        raw = raw.encode()
                    elif not isinstance(raw, bytes):
                        raw = bytes(raw)
                    f = fds.get(folder)
                    if f is None:
                        f = fds[folder] = self._FolderFds(self._ensure_folder(user, folder))
                    key = flags if isinstance(flags, (str, bytes)) else tuple(flags)
                    letters = flag_cache.get(key)
                    if letters is None:
                        letters = flag_cache[key] = _maildir_flags(flags)
                    if when is None:
                        if now_ts is None:
                            now_ts = time.time()
                        ts = now_ts
                    else:
                        ts = _to_timestamp(when)
                    sec, us = self._next_tv()
                    name = self._write_message(f, f"{sec}.M{us}P{pid}.threadline", raw, ts, letters, atomic)
                    paths.append(f"{f.path}/cur/{name}")
        finally:
            for f in fds.values():
                f.close()
        return paths


# ---------------------------------------------------------------------------
# Postgres
# ---------------------------------------------------------------------------


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

    def __init__(self, tmpdir: str | os.PathLike | None = None, *, port: int | None = None,
                 os_user: str = "postgres", bindir: str | None = None,
                 settings: dict | None = None, keep_data: bool = False, in_memory: bool = False):
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
                r = self._as_user([
                    self._bin("initdb"), "-D", str(self.data_dir), "-A", "trust", "-U", self.user,
                    "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
                ])
                if r.returncode != 0 and "--no-instructions" in r.stderr:
                    r = self._as_user([
                        self._bin("initdb"), "-D", str(self.data_dir), "-A", "trust", "-U", self.user,
                        "-E", "UTF8", "--locale=C", "--no-sync",
                    ])
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
                r = self._as_user([
                    self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                    "-o", " ".join(opts), "-w", "-t", "60", "start",
                ])
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
            if self.root is None:
                return
            pid = self.postmaster_pid
            if pid and _pid_alive(pid):
                kids = _descendants(pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._as_user([self._bin("pg_ctl"), "-D", str(self.data_dir), "stop", "-m", "fast", "-w", "-t", "30"],
                                  timeout=40)
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
            [self._bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-A", "-t",
             "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", dbname, "-c", sql],
            capture_output=True, text=True, timeout=60,
        )
        if r.returncode != 0:
            raise ServerError(f"psql failed: {r.stderr.strip()}")
        return r.stdout

    def create_database(self, name: str | None = None, driver: str = "psycopg2") -> str:
        """CREATE DATABASE (random name if None) and return its SQLAlchemy URL."""
        name = name or "t_" + secrets.token_hex(6)
        if not _DBNAME_RE.match(name):
            raise ValueError(f"database name must match {_DBNAME_RE.pattern}: {name!r}")
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url_for(name, driver)

    def drop_database(self, name: str) -> None:
        if not _DBNAME_RE.match(name):
            raise ValueError(f"bad database name {name!r}")
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------------------
# FaultProxy
# ---------------------------------------------------------------------------


class _ProxyConn:
    def __init__(self, proxy: "FaultProxy", client: socket.socket, upstream: socket.socket, cid: int):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.id = cid
        self.closed = False
        self._lock = threading.Lock()
        self._threads_left = 2
        self.s2c = 0  # bytes forwarded server -> client
        self.c2s = 0
        self.s2c_since_arm = 0
        self.arm_epoch = -1

    def close(self, reset: bool = False) -> None:
        """Tear down both sides (idempotent, callable from any thread)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            if reset:
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                # wakes the pump threads; with SO_LINGER 0 the final close() sends RST
                s.shutdown(socket.SHUT_RD if reset else socket.SHUT_RDWR)

    def _thread_done(self) -> None:
        with self._lock:
            self._threads_left -= 1
            last = self._threads_left == 0
        if last:
            for s in (self.client, self.upstream):
                with contextlib.suppress(OSError):
                    s.close()
            self.proxy._forget(self)


class FaultProxy:
    """Threaded TCP proxy on 127.0.0.1 that can inject connection faults.

    ``FaultProxy(target_host, target_port, *, listen_host="127.0.0.1", listen_port=0)``

    Faults:
      - ``cut_after(nbytes, once=True, reset=False)``: once ``nbytes`` more bytes
        have gone server->client on a connection (counted from arming for open
        connections, from accept for new ones), forward exactly up to that
        point, then close both sides.  ``once=True`` disarms after the first
        cut; ``once=False`` cuts every connection.  ``reset=True`` sends RST
        instead of FIN.
      - ``cut_all(reset=False)``: close all open connections now.
      - ``refuse(True/False)``: accept, then immediately close new connections.
      - ``stall(True/False)``: stop forwarding (connections stay open, data is
        held back) — for client timeout tests.
      - ``latency = seconds``: delay every forwarded chunk.
      - ``heal()``: remove all faults.
    Counters: ``connections_total``, ``connections_open``, ``connections_refused``,
    ``cuts``, ``bytes_s2c``, ``bytes_c2s``.
    """

    def __init__(self, target_host: str, target_port: int, *, listen_host: str = LOOPBACK,
                 listen_port: int = 0):
        self.target = (target_host, int(target_port))
        self.host = listen_host
        self._listen_port = listen_port
        self.port = 0
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._conns: dict[int, _ProxyConn] = {}
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._tlock = threading.Lock()
        self._unstalled = threading.Event()
        self._unstalled.set()
        self._cut_after: int | None = None
        self._cut_once = True
        self._cut_reset = False
        self._arm_epoch = 0
        self._refuse = False
        self.latency = 0.0
        self.connections_total = 0
        self.connections_refused = 0
        self.cuts = 0
        self.bytes_s2c = 0
        self.bytes_c2s = 0

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "FaultProxy":
        if self._sock is not None:
            return self
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self._listen_port))
        s.listen(128)
        s.settimeout(0.2)
        self._sock = s
        self.port = s.getsockname()[1]
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"FaultProxy-accept-{self.port}", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._unstalled.set()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        self.cut_all()
        with self._tlock:
            threads = list(self._threads)
        for t in threads:
            t.join(5)
        with self._tlock:
            self._threads.clear()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FaultProxy {self.host}:{self.port} -> {self.target[0]}:{self.target[1]} open={self.connections_open}>"

    # -- controls --------------------------------------------------------------
    @property
    def connections_open(self) -> int:
        with self._lock:
            return len(self._conns)

    def cut_after(self, nbytes: int | None, once: bool = True, reset: bool = False) -> None:
        with self._lock:
            self._cut_after = nbytes
            self._cut_once = once
            self._cut_reset = reset
            self._arm_epoch += 1

    def cut_all(self, reset: bool = False) -> int:
        with self._lock:
            conns = list(self._conns.values())
        for c in conns:
            c.close(reset=reset)
        if conns:
            with self._lock:
                self.cuts += len(conns)
        return len(conns)

    def refuse(self, on: bool = True) -> None:
        self._refuse = bool(on)

    def stall(self, on: bool = True) -> None:
        if on:
            self._unstalled.clear()
        else:
            self._unstalled.set()

    def heal(self) -> None:
        self.cut_after(None)
        self.refuse(False)
        self.stall(False)
        self.latency = 0.0

    def wait_for_connections(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until ``connections_total >= n``."""
        deadline = time.monotonic() + timeout
        while self.connections_total < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # -- internals -------------------------------------------------------------
    def _forget(self, conn: _ProxyConn) -> None:
        with self._lock:
            self._conns.pop(conn.id, None)

    def _spawn(self, target, *args, name: str) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._tlock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)
                continue
            with self._lock:
                self.connections_total += 1
            if self._refuse:
                with self._lock:
                    self.connections_refused += 1
                with contextlib.suppress(OSError):
                    client.close()
                continue
            self._spawn(self._open, client, name=f"FaultProxy-open-{self.port}")

    def _open(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            with contextlib.suppress(OSError):
                client.close()
            return
        for s in (client, upstream):
            s.settimeout(None)
            with contextlib.suppress(OSError):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _ProxyConn(self, client, upstream, next(self._ids))
        with self._lock:
            if self._stopping.is_set():
                conn.closed = True
            conn.arm_epoch = self._arm_epoch
            self._conns[conn.id] = conn
        if conn.closed:
            client.close()
            upstream.close()
            self._forget(conn)
            return
        self._spawn(self._pump, conn, upstream, client, True, name=f"FaultProxy-s2c-{conn.id}")
        self._spawn(self._pump, conn, client, upstream, False, name=f"FaultProxy-c2s-{conn.id}")

    def _pump(self, conn: _ProxyConn, src: socket.socket, dst: socket.socket, s2c: bool) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(src, selectors.EVENT_READ)
            while not conn.closed and not self._stopping.is_set():
                if not sel.select(0.2):
                    continue
                if conn.closed:
                    break
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    # orderly EOF: propagate half-close, the other pump finishes the job
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    break
                while not self._unstalled.is_set() and not conn.closed and not self._stopping.is_set():
                    self._unstalled.wait(0.1)
                if self.latency:
                    time.sleep(self.latency)
                if conn.closed:
                    break
                cut = False
                reset = False
                if s2c:
                    with self._lock:
                        limit = self._cut_after
                        if limit is not None:
                            if conn.arm_epoch != self._arm_epoch:
                                conn.arm_epoch = self._arm_epoch
                                conn.s2c_since_arm = 0
                            room = limit - conn.s2c_since_arm
                            if len(data) >= room:
                                data = data[: max(room, 0)]
                                cut = True
                                reset = self._cut_reset
                                self.cuts += 1
                                if self._cut_once:
                                    self._cut_after = None
                            conn.s2c_since_arm += len(data)
                try:
                    if data:
                        dst.sendall(data)
                except OSError:
                    break
                with self._lock:
                    if s2c:
                        conn.s2c += len(data)
                        self.bytes_s2c += len(data)
                    else:
                        conn.c2s += len(data)
                        self.bytes_c2s += len(data)
                if cut:
                    conn.close(reset=reset)
                    break
        finally:
            sel.close()
            # if one direction is finished for good (error/cut), finish the other too
            if conn.closed or s2c:
                conn.close()
            conn._thread_done()


# -- the app itself and a browser ----------------------------------------------

class AppServer:
    """Threadline's FastAPI app served by uvicorn on a loopback port, in a thread."""

    def __init__(self, fastapi_app, host: str = LOOPBACK, port: int | None = None):
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        config = uvicorn.Config(fastapi_app, host=self.host, port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "AppServer":
        import threading

        self._thread = threading.Thread(target=self._server.run, name="test-app-server", daemon=True)
        self._thread.start()
        wait_for_port(self.host, self.port, timeout=15)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


# ---------------------------------------------------------------------------
# Radicale (CalDAV)
# ---------------------------------------------------------------------------


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

    def __init__(self, tmpdir: str | os.PathLike | None = None, *, port: int | None = None,
                 python: str | None = None, keep_data: bool = False):
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
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        preexec_fn=_die_with_parent, cwd=str(self.root))
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
                                raise ServerError(f"radicale not listening on {self.port}\n{_tail(self.log_path)}")
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

    def request(self, method: str, path_or_url: str, username: str, password: str, body: bytes | str = b"",
                headers: dict | None = None, timeout: float = 30.0):
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

    def make_calendar(self, username: str, password: str, calendar: str = "calendar",
                      display_name: str | None = None, components: Sequence[str] = ("VEVENT",)) -> str:
        """MKCALENDAR /username/calendar/; returns the calendar's URL."""
        comps = "".join(f'<C:comp name="{c}"/>' for c in components)
        body = ('<?xml version="1.0" encoding="utf-8"?>'
                '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
                f"<D:displayname>{display_name or calendar}</D:displayname>"
                f"<C:supported-calendar-component-set>{comps}</C:supported-calendar-component-set>"
                "</D:prop></D:set></C:mkcalendar>")
        status, _, text = self.request("MKCALENDAR", f"/{username}/{calendar}/", username, password, body,
                                       {"Content-Type": "application/xml; charset=utf-8"})
        if status not in (200, 201):
            raise ServerError(f"MKCALENDAR failed: {status} {text[:300]!r}")
        return self.calendar_url(username, calendar)

    def put_event(self, username: str, password: str, calendar: str, name: str, ics: bytes | str) -> str:
        """PUT one calendar object resource; returns its path."""
        path = f"/{username}/{calendar}/{name}"
        status, _, text = self.request("PUT", path, username, password, ics,
                                       {"Content-Type": "text/calendar; charset=utf-8"})
        if status not in (200, 201, 204):
            raise ServerError(f"PUT {path} failed: {status} {text[:300]!r}")
        return path

    def delete_event(self, username: str, password: str, calendar: str, name: str) -> None:
        path = f"/{username}/{calendar}/{name}"
        status, _, text = self.request("DELETE", path, username, password)
        if status not in (200, 204):
            raise ServerError(f"DELETE {path} failed: {status} {text[:300]!r}")
