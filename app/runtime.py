"""Process-wide wiring: settings -> engine (migrated) + secret box."""

from __future__ import annotations

import gc
import os
import threading
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from app import netguard
from app.crypto import SecretBox, secret_box
from app.db import PostgresReaders, SqliteReader, make_engine, sqlite_path, upgrade
from app.settings import Settings, get_settings


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    box: SecretBox
    _readers: threading.local = field(default_factory=threading.local, repr=False)
    _pg_readers: PostgresReaders | None = field(default=None, repr=False)
    _pg_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def sqlite_reader(self) -> SqliteReader | None:
        """This thread's plain SQLite connection for hot reads; None on PostgreSQL."""
        path = sqlite_path(self.settings.database_url)
        if path is None:
            return None
        reader = getattr(self._readers, "reader", None)
        if reader is None:
            reader = self._readers.reader = SqliteReader(path)
        return reader

    def postgres_readers(self) -> PostgresReaders | None:
        """The plain PostgreSQL connections for hot reads; None on other databases."""
        if self._pg_readers is None:
            if self.engine.dialect.name != "postgresql":
                return None
            with self._pg_lock:
                if self._pg_readers is None:
                    self._pg_readers = PostgresReaders(self.engine)
        return self._pg_readers

    def close_readers(self) -> None:
        """Close the idle PostgreSQL readers (the app's shutdown)."""
        if self._pg_readers is not None:
            self._pg_readers.close()


def open_runtime(settings: Settings | None = None, *, migrate: bool = True) -> Runtime:
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    netguard.install(settings.refuse_private_hosts, settings.private_hosts_allowed, settings.dns_server)
    if migrate:
        upgrade(settings.database_url)
    return Runtime(settings, make_engine(settings.database_url), secret_box(settings))


def freeze_startup_heap() -> None:
    """Leave the objects alive after start-up (modules, SQLAlchemy's tables, mappers and statement
    caches, settings) out of the cyclic garbage collector's full collections from now on.

    A first import allocates millions of short-lived objects, and every full collection walked
    all of these long-lived ones again; called by the sync and worker commands once the app is
    imported and the runtime opened (measured in docs/performance.md section 10)."""
    gc.collect()
    gc.freeze()


def lower_cpu_priority(nice: int) -> int:
    """Run this process at nice value `nice` at least, and return the value it now has.

    The worker calls it first, before it starts a thread or a fetch child: on Linux a nice value
    belongs to a thread and is inherited by the threads and processes created after it is set.
    On a host shared with the web app, a first import at normal priority keeps both cores busy
    and reps' lookups queue behind it; niced, the import takes what the requests leave
    (docs/performance.md section 8). Never raises the priority: that needs privileges, and an
    operator who started the worker nicer meant it."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, min(nice, 19))
    return os.getpriority(os.PRIO_PROCESS, 0)
