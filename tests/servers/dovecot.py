"""A private Dovecot IMAP server with Maildir helpers to deliver, flag and reshape mail on disk."""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import errno
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable

from tests.servers.base import _USERNAME_RE, LOOPBACK, OWNER_MARKER, ServerBinaryMissing, ServerError, free_port
from tests.servers.processes import (
    _descendants,
    _ensure_system_user,
    _find_binary,
    _kill,
    _make_runtime_root,
    _pid_alive,
    _pids_with_title_prefix,
    _proc_cmdline,
    _register,
    _self_marker,
    _tail,
    _unregister,
    _wait_dead,
    reap_orphans,
)

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
    imap_client_limit=1, idle_check_interval=1, auth_failure_delay=0, mail_user="vmail",
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
        imap_client_limit: int = 1,
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
        self.imap_client_limit = imap_client_limit  # connections per imap process (many IDLE ones: raise it)
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
# generated by tests/servers/dovecot.py -- private test instance
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
  client_limit = {self.imap_client_limit}
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
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        timeout=60,
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
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
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
    def doveadm(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """Run ``doveadm -c CONF ARGS...`` (text mode); raises ServerError on failure if check."""
        if self.root is None:
            raise ServerError("Dovecot not started")
        r = subprocess.run(
            [self.doveadm_bin or self.find_binaries()[1], "-c", str(self.conf_path), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and r.returncode != 0:
            raise ServerError(f"doveadm {' '.join(map(str, args))} failed (rc={r.returncode}): {r.stderr.strip()}")
        return r

    def mailbox_status(
        self, user: str, folder: str = "INBOX", fields: str = "messages uidvalidity uidnext highestmodseq"
    ) -> dict[str, int]:
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

    def _write_message(
        self, f: "Dovecot._FolderFds", base: str, raw: bytes, ts: float, letters: str, atomic: bool
    ) -> str:
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
                    view = view[os.write(fd, view) :]
            os.fchown(fd, self._uid, self._gid)
            os.utime(fd, (ts, ts))
        finally:
            os.close(fd)
        if atomic:
            os.rename(base, name, src_dir_fd=f.tmp, dst_dir_fd=f.cur)
        return name

    def deliver(
        self, user: str, raw: bytes, folder: str = "INBOX", internaldate: "_dt.datetime | float | None" = None, flags=""
    ) -> Path:
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
