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

One module per server: ``dovecot``, ``postgres``, ``radicale``, ``faultproxy``
(the fault-injecting TCP proxy) and ``appserver`` (the app itself, Chromium's
path and flags); ``base`` holds the errors and free ports, ``processes`` the
runtime directories and the reaping. Import from ``tests.servers``.
"""

from tests.servers.appserver import CHROMIUM, CHROMIUM_ARGS, AppServer
from tests.servers.base import (
    LOOPBACK,
    OWNER_MARKER,
    RUNTIME_PREFIX,
    ServerBinaryMissing,
    ServerError,
    free_port,
    wait_for_port,
)
from tests.servers.dovecot import Dovecot, imap_utf7_encode
from tests.servers.faultproxy import FaultProxy
from tests.servers.postgres import Postgres
from tests.servers.processes import SHM_DIR, _pid_alive, _pids_with_title_prefix, memory_tmpdir, reap_orphans
from tests.servers.radicale import Radicale

__all__ = [
    "LOOPBACK",
    "OWNER_MARKER",
    "RUNTIME_PREFIX",
    "ServerError",
    "ServerBinaryMissing",
    "free_port",
    "wait_for_port",
    "_pid_alive",
    "_pids_with_title_prefix",
    "SHM_DIR",
    "memory_tmpdir",
    "reap_orphans",
    "imap_utf7_encode",
    "Dovecot",
    "Postgres",
    "FaultProxy",
    "AppServer",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "Radicale",
]
