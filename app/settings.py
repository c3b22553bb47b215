"""Runtime settings, read from the environment once per process; and who this
worker is, for sync leases (see holder_gone at the end).

Everything has a working default so `threadline serve --demo` runs on a fresh
machine: data lives in ./data (SQLite in WAL mode plus the secret key file); the demo
keeps its own in ./data/demo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    secret_key: str | None = None  # THREADLINE_SECRET_KEY; else a key file in data_dir
    public_url: str = "http://127.0.0.1:8000"
    worker_id: str = field(default_factory=lambda: worker_id())  # host:pid:pid-space, see holder_gone
    sync_lease_seconds: int = 300
    scheduler_tick_seconds: float = 5.0
    idle_enabled: bool = True
    # Which worker holds a mailbox's IDLE connection is a lease too (mailbox.watch_owner): a
    # killed worker's mailboxes are watched by another within this time (at once on the same host).
    idle_lease_seconds: int = 60
    idle_max_mailboxes: int = 2000  # IDLE connections one worker holds at most; more workers share the rest
    # Microsoft Entra ID sign-in for the Outlook add-in (nested app authentication).
    entra_client_id: str | None = None  # THREADLINE_ENTRA_CLIENT_ID: the API's app registration (token audience)
    entra_scope: str = "access_as_user"  # THREADLINE_ENTRA_SCOPE: the delegated scope the token must carry
    entra_authority: str = "https://login.microsoftonline.com"  # THREADLINE_ENTRA_AUTHORITY (JWKS and issuer base)
    dns_server: str | None = None  # THREADLINE_DNS_SERVER: host[:port] for finding mail servers; else the system's
    # `threadline worker` runs at this nice value (0 = as started): a first import sharing a host
    # with the web app then gives the CPU to reps' requests first (docs/performance.md section 8).
    worker_nice: int = 10
    # Refuse connections to loopback, private and link-local addresses (mailbox, calendar and SMTP
    # servers): for a server shared by several companies (app/netguard.py says why).
    refuse_private_hosts: bool = False  # THREADLINE_REFUSE_PRIVATE_HOSTS
    private_hosts_allowed: str = ""  # THREADLINE_PRIVATE_HOSTS_ALLOWED: addresses or networks, comma-separated


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    data_dir = Path(env.get("THREADLINE_DATA_DIR", "data")).resolve()
    url = env.get("THREADLINE_DATABASE_URL") or f"sqlite:///{data_dir / 'threadline.db'}"
    return Settings(
        data_dir=data_dir,
        database_url=url,
        secret_key=env.get("THREADLINE_SECRET_KEY") or None,
        public_url=env.get("THREADLINE_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
        sync_lease_seconds=int(env.get("THREADLINE_SYNC_LEASE_SECONDS", "300")),
        scheduler_tick_seconds=float(env.get("THREADLINE_SCHEDULER_TICK", "5")),
        idle_enabled=env.get("THREADLINE_IDLE", "1") not in ("0", "false", "no"),
        idle_lease_seconds=int(env.get("THREADLINE_IDLE_LEASE_SECONDS", "60")),
        idle_max_mailboxes=int(env.get("THREADLINE_IDLE_MAX_MAILBOXES", "2000")),
        entra_client_id=env.get("THREADLINE_ENTRA_CLIENT_ID") or None,
        entra_scope=env.get("THREADLINE_ENTRA_SCOPE") or "access_as_user",
        entra_authority=(env.get("THREADLINE_ENTRA_AUTHORITY") or "https://login.microsoftonline.com").rstrip("/"),
        dns_server=env.get("THREADLINE_DNS_SERVER") or None,
        worker_nice=int(env.get("THREADLINE_WORKER_NICE") or "10"),
        refuse_private_hosts=env.get("THREADLINE_REFUSE_PRIVATE_HOSTS", "0").lower() not in ("0", "", "false", "no"),
        private_hosts_allowed=env.get("THREADLINE_PRIVATE_HOSTS_ALLOWED", ""),
    )


def demo_settings(settings: Settings) -> Settings:
    """Where `serve --demo` keeps the demo company: its own folder and SQLite database
    under the data dir, so a real set-up in the same place never mixes with it
    (THREADLINE_DATABASE_URL is for the real data, never the demo)."""
    data_dir = settings.data_dir / "demo"
    return replace(settings, data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'threadline.db'}")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


# -- who holds a sync lease ---------------------------------------------------------
# A lease names its holder as host:pid:pid-space, the pid space being this boot of
# the machine and its process namespace (two machines may share a host name, and
# containers sharing one have their own pids). A holder in this pid space whose
# process no longer runs was killed: its lease can be taken over at once instead
# of when it expires. A reused pid can only make a dead holder look alive (its
# lease then expires as before), never a live one look dead.


def _pid_space() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()[:8]
        return f"{boot}-{os.readlink('/proc/self/ns/pid').rsplit('[', 1)[-1].rstrip(']')}"
    except OSError:
        return "-"


def worker_id() -> str:
    return f"{os.uname().nodename}:{os.getpid()}:{_pid_space()}"


def holder_gone(owner: str | None) -> bool:
    """Whether the lease holder `owner` (a worker_id) is known to be dead."""
    host, _, rest = (owner or "").partition(":")
    pid, _, space = rest.partition(":")
    if not pid.isdigit() or host != os.uname().nodename or space in ("-", "") or space != _pid_space():
        return False
    return not _running(int(pid))


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[-1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: assume it runs
    return state not in (b"Z", b"X")  # a killed process its parent has not reaped yet
