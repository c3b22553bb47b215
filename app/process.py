"""Who holds a sync lease, and whether that process is gone.

A lease names its holder as host:pid:pid-namespace. A holder on this host, in
this process namespace (containers sharing a host name have their own pids),
whose process no longer runs was killed: its lease can be taken over at once
instead of when it expires. A reused pid can only make a dead holder look
alive (its lease then expires as before), never a live one look dead.
"""
from __future__ import annotations

import os


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").rsplit("[", 1)[-1].rstrip("]")
    except OSError:
        return "-"


def worker_id() -> str:
    return f"{os.uname().nodename}:{os.getpid()}:{_pid_namespace()}"


def holder_gone(owner: str | None) -> bool:
    """Whether the lease holder `owner` (a worker_id) is known to be dead."""
    host, _, rest = (owner or "").partition(":")
    pid, _, namespace = rest.partition(":")
    if not pid.isdigit() or host != os.uname().nodename or namespace != _pid_namespace():
        return False
    return not _running(int(pid))


def _running(pid: int) -> bool:
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[-1].split()[0]
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: assume it runs
        return state not in (b"Z", b"X")  # a killed process its parent has not reaped yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
