"""Processes and runtime directories of test servers: finding binaries, private runtime dirs that
a dropped-privilege server can traverse, and reaping what a killed test run left behind."""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

from tests.servers.base import _SBIN_DIRS, OWNER_MARKER, RUNTIME_PREFIX, ServerBinaryMissing, ServerError


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


def _make_runtime_root(tmpdir: str | os.PathLike | None, kind: str, in_memory: bool = False) -> tuple[Path, bool]:
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
    elif (
        tmpdir is not None
        and _others_can_traverse(tmpdir)
        # keep unix socket paths short (sun_path is 108 bytes)
        and len(str(tmpdir.resolve())) < 60
    ):
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
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        capture_output=True,
        text=True,
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
    for pf, sig in ((root / "run" / "master.pid", signal.SIGTERM), (root / "data" / "postmaster.pid", signal.SIGQUIT)):
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
