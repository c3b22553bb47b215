"""Engine creation, SQLite tuning, migrations on start, and a portable insert-or-ignore."""

from __future__ import annotations

import itertools
import secrets
import threading
import zlib
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from sqlalchemy import Table, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if "poolclass" not in kwargs:
            # FastAPI runs sync endpoints on a 40-thread pool; let each have a connection.
            kwargs.update(pool_size=20, max_overflow=20)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            # WAL lets the API read while the sync writes; NORMAL is durable at
            # every checkpoint and is what WAL is designed to run with.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA cache_size=-65536")
            # Checkpoint every ~40 MB of WAL instead of 4 MB: far fewer fsyncs during imports.
            cur.execute("PRAGMA wal_autocheckpoint=10000")
            cur.close()
            # pysqlite's own transaction handling defers BEGIN; SQLAlchemy's
            # documented recipe makes writers take the lock up front instead.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # noqa: ANN001
            # A deferred transaction that reads and then writes fails at once with
            # "database is locked" if another connection committed meanwhile; so
            # every transaction takes the write lock up front (writers queue on
            # busy_timeout) except those opened by read_only() for pure reads.
            conn.exec_driver_sql("BEGIN" if conn.info.get("readonly") else "BEGIN IMMEDIATE")

        return engine
    if "poolclass" not in kwargs:
        kwargs.update(pool_size=10, max_overflow=20)
    if url.startswith("postgresql"):
        # psycopg2's own executemany sends one statement per parameter set and waits for each:
        # in a 10,000-message first import that was 3,600 of 4,400 round trips (the follow-up
        # upserts, which SQLAlchemy's insertmanyvalues leaves out because of their ON CONFLICT,
        # and the per-row updates of follow-ups, contacts and companies). "values_plus_batch"
        # (SQLAlchemy 2.x; INSERTs without ON CONFLICT already go as multi-row VALUES) sends
        # those through psycopg2's execute_batch: up to 500 statements per round trip. Its only
        # cost is that an executemany UPDATE or DELETE reports no rowcount, which nothing reads.
        kwargs.setdefault("executemany_mode", "values_plus_batch")
        kwargs.setdefault("executemany_batch_page_size", 500)
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args["options"] = utc_session(connect_args.get("options") or make_url(url).query.get("options"))
    return create_engine(url, pool_pre_ping=True, **kwargs)


def utc_session(options) -> str:
    """libpq `options` that also set the session's TimeZone to UTC.

    A server's TimeZone is the host's by default (Debian's initdb takes it), and a session
    returns timestamps and formats them in it: with the server in Pacific/Kiritimati a meeting
    at 03:00 UTC read back as 17:00+14:00, and text made from such a value (a CSV cell, a
    day) depended on where the database runs. UTC for every session makes every server answer
    alike; the stored values never depended on it (timestamptz)."""
    given = options if isinstance(options, str) else " ".join(options or ())
    return f"{given} -c TimeZone=UTC".strip()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction that writes (on SQLite it holds the write lock from BEGIN)."""
    with engine.begin() as conn:
        yield conn


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only: on SQLite its transactions never take the
    write lock, so API reads go on while a sync commits."""
    with engine.connect() as conn:
        conn.info["readonly"] = True
        try:
            yield conn
        finally:
            conn.info.pop("readonly", None)


def insert_ignore(conn: Connection, table: Table, rows: list[dict]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL alike."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).on_conflict_do_nothing(), rows)


def advisory_locks(conn: Connection, keys: list[tuple[int, bool]]) -> None:
    """PostgreSQL transaction-level advisory locks, (64-bit key, exclusive?) in the
    order given, in one statement; released at commit or rollback. Callers pass
    keys in one global order so that two writers never wait for each other in a
    cycle. SQLite has a single writer anyway: nothing to do."""
    if conn.dialect.name != "postgresql" or not keys:
        return
    conn.exec_driver_sql(
        "SELECT CASE WHEN x THEN pg_advisory_xact_lock(k) ELSE pg_advisory_xact_lock_shared(k) END "
        "FROM unnest(%(k)s::bigint[], %(x)s::boolean[]) AS t(k, x)",
        {"k": [k for k, _ in keys], "x": [x for _, x in keys]},
    ).fetchall()


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Bring the database to the newest schema (run on every start)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


def utc_day_sql(conn: Connection, col: str) -> str:
    """SQL for the UTC day of a timestamp column, as YYYY-MM-DD text (SQLite keeps UTC text)."""
    if conn.dialect.name == "postgresql":
        return f"to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    return f"substr({col}, 1, 10)"


def utc_day(at) -> str:
    """The UTC day of a time in database form (db_time's SQLite text, or a datetime; a naive one
    is UTC, as stored), as utc_day_sql gives it."""
    if isinstance(at, str):
        return at[:10]
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc)
    return at.strftime("%Y-%m-%d")


def db_time(conn: Connection, value):
    """A datetime as this database stores it, for the raw bulk path below.

    On SQLite it must be the exact text SQLAlchemy writes (UTC, microseconds),
    because range queries compare those strings.
    """
    from datetime import timezone

    if value is None or conn.dialect.name != "sqlite":
        return value
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def bulk_insert_ignore(conn: Connection, table: Table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Insert many plain rows, skipping ones that hit a unique key, without the
    per-row bookkeeping of the ORM or Core executemany (the ingest hot path).
    Values must already be in database form (see db_time)."""
    if not rows:
        return
    cols = ", ".join(columns)
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" * len(columns))
        conn.exec_driver_sql(f"INSERT OR IGNORE INTO {table.name} ({cols}) VALUES ({marks})", rows)
        return
    from psycopg2.extras import execute_values

    cursor = conn.connection.driver_connection.cursor()
    try:
        execute_values(
            cursor, f"INSERT INTO {table.name} ({cols}) VALUES %s ON CONFLICT DO NOTHING", rows, page_size=1000
        )
    finally:
        cursor.close()


# Fewer rows than this go to PostgreSQL as one multi-row VALUES statement (one round trip);
# more are staged by COPY (two round trips, but no statement text to build and parse).
STAGE_FROM = 100


def insert_values(conn: Connection, table: str, columns: tuple[str, ...], rows: list[tuple], tail: str = "") -> None:
    """`INSERT INTO table (columns) ... tail` for many rows (tail: an ON CONFLICT clause).
    psycopg2's executemany sends one statement per row (a round trip each: 0.27 s of a
    10,000-message first import went to the summary upserts that way); on PostgreSQL the rows
    go as one multi-row VALUES statement, or, from STAGE_FROM rows on, staged by COPY: the
    per-day strength summary's upsert waited 0.4 s of a 20,000-message import as VALUES pages,
    most of it building and parsing their text (docs/performance.md section 6). On SQLite,
    executemany in-process is already the fast way."""
    if not rows:
        return
    head = f"INSERT INTO {table} ({', '.join(columns)})"
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" * len(columns))
        conn.exec_driver_sql(f"{head} VALUES ({marks}) {tail}", rows)
        return
    if len(rows) >= STAGE_FROM:
        _staged_insert(conn, table, columns, rows, tail)
        return
    from psycopg2.extras import execute_values

    cursor = conn.connection.driver_connection.cursor()
    try:
        execute_values(cursor, f"{head} VALUES %s {tail}", rows, page_size=len(rows))
    finally:
        cursor.close()


# COPY's text format: these four characters are escaped, \N is NULL.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_SPECIAL = ("\\", "\t", "\n", "\r")


def _copy_column(values: tuple) -> list[str]:
    """One column's values as COPY text. Whole columns at a time, with the common
    cases (integers, plain strings) done by C loops: building this text value by
    value in Python cost more than PostgreSQL's work on the rows (cProfile, 10,000
    messages: 1.4 s of 3.2 s in the ingest process)."""
    kinds = {type(v) for v in values}
    nulls = type(None) in kinds
    kinds.discard(type(None))
    if kinds == {int}:
        return [r"\N" if v is None else str(v) for v in values] if nulls else list(map(str, values))
    if kinds and all(issubclass(k, str) for k in kinds):
        if any(c in "".join(filter(None, values)) for c in _COPY_SPECIAL):
            return [r"\N" if v is None else v.translate(_COPY_ESCAPES) for v in values]
        return [r"\N" if v is None else v for v in values] if nulls else list(values)
    if kinds == {datetime}:
        return [r"\N" if v is None else v.isoformat() for v in values]
    out = []
    for v in values:
        if v is None:
            out.append(r"\N")
        elif type(v) is bool:
            out.append("t" if v else "f")
        elif isinstance(v, datetime):
            out.append(v.isoformat())
        else:
            out.append(str(v).translate(_COPY_ESCAPES))
    return out


def _copy_text(rows: list[tuple], numbered: bool = False) -> str:
    """COPY text of the rows; numbered adds their position as a last column."""
    columns = [_copy_column(values) for values in zip(*rows, strict=True)]
    if numbered:
        columns.append(list(map(str, range(len(rows)))))
    return "\n".join(map("\t".join, zip(*columns, strict=True))) + "\n"


def bulk_insert_new(conn: Connection, table: Table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Insert rows that cannot exist yet (they belong to rows this transaction
    has just inserted, and are distinct among themselves). On PostgreSQL this is
    COPY: no statement text to build and parse, no conflict arbiter. Measured at
    10,000 messages (about 20,000 participant rows, issue 18): the multi-row
    INSERT ... ON CONFLICT DO NOTHING waited 0.61-0.73 s on the driver, plus its
    share of 0.33 s of mogrify building the text. A row that did exist fails the
    batch (rolled back whole) rather than being skipped. SQLite: INSERT OR IGNORE."""
    if conn.dialect.name != "postgresql":
        bulk_insert_ignore(conn, table, columns, rows)
        return
    if not rows:
        return
    cursor = conn.connection.driver_connection.cursor()
    try:
        _copy(cursor, table.name, columns, rows)
    finally:
        cursor.close()


def _copy(
    cursor, table_name: str, columns: tuple[str, ...], rows: list[tuple], numbered: bool = False, before: str = ""
) -> None:
    """COPY the rows into the table; `before` is SQL run first in the same request (the
    simple query protocol runs a string of statements in order, and libpq hands the COPY's
    data over when the server gets to it): one round trip instead of two."""
    import io

    import psycopg2
    from sqlalchemy.exc import DBAPIError

    text = _copy_text(rows, numbered)
    statement = f"{before}COPY {table_name} ({', '.join(columns)}) FROM STDIN"
    try:
        cursor.copy_expert(statement, io.StringIO(text))
    except psycopg2.Error as exc:
        # The driver's own cursor raises the driver's errors: give callers SQLAlchemy's, as every
        # other statement does, so that a batch that lost a race (a key written at the same
        # moment, a contact merged away since the batch read it) is retried like any other.
        raise DBAPIError.instance(statement, None, exc, psycopg2.Error) from exc


def bulk_insert_ignore_returning(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: list[tuple],
    returning: tuple[str, ...],
    chunk: int = 500,
    on_conflict: str = "ON CONFLICT DO NOTHING",
) -> list[tuple]:
    """Like bulk_insert_ignore, but returns `returning` columns of the rows that
    were really inserted (rows hitting a unique key are left out), so callers can
    count exactly what is new even with several writers at once. `on_conflict` may
    be a DO UPDATE clause instead (an upsert): the rows it rewrites are returned too."""
    if not rows:
        return []
    cols, ret = ", ".join(columns), ", ".join(returning)
    out: list[tuple] = []
    if conn.dialect.name == "sqlite":
        one = "(" + ", ".join("?" * len(columns)) + ")"
        for i in range(0, len(rows), chunk):
            part = rows[i : i + chunk]
            verb = "INSERT OR IGNORE" if on_conflict == "ON CONFLICT DO NOTHING" else "INSERT"
            tail = "" if verb == "INSERT OR IGNORE" else f" {on_conflict}"
            sql = f"{verb} INTO {table.name} ({cols}) VALUES {', '.join([one] * len(part))}{tail} RETURNING {ret}"
            flat = [v for row in part for v in row]
            out.extend(tuple(r) for r in conn.exec_driver_sql(sql, tuple(flat)).fetchall())
        return out
    return _staged_insert(conn, table.name, columns, rows, f"{on_conflict} RETURNING {ret}")


def _staged_insert(conn: Connection, table: str, columns: tuple[str, ...], rows: list[tuple], tail: str) -> list[tuple]:
    """PostgreSQL: COPY the rows into a temporary table of this session, then one
    INSERT ... SELECT ... tail; what a RETURNING in the tail hands back. Building a
    multi-row VALUES text (mogrify, a Python call per row) and parsing it cost more
    than inserting the rows: at 10,000 messages the interaction and copy inserts waited
    0.48-0.65 s on the driver that way, 0.41-0.50 s with the stage (docs/performance.md,
    issue 18), and no mogrify. Rows go in in the caller's order (tl_ord), which the
    lock-ordering callers rely on (interactions in key order: no deadlocks between writers)."""
    cols = ", ".join(columns)
    # One stage per table and column list (meetings and mail write different columns of interaction).
    stage = f"tl_stage_{table}_{zlib.crc32(cols.encode()):08x}"
    cursor = conn.connection.driver_connection.cursor()
    try:
        # The stage is made (when this session has none yet) in the COPY's own request: a
        # statement of its own was a round trip per call, 26 of a 10,000-message import's 691.
        # Remembering it per connection instead would go wrong when the creating transaction
        # rolls back and takes the table with it.
        create = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
            f"SELECT {cols}, 0::bigint AS tl_ord FROM {table} WITH NO DATA; "
        )
        _copy(cursor, stage, (*columns, "tl_ord"), rows, numbered=True, before=create)
        # The stage is emptied by the same statement (a round trip fewer than a
        # TRUNCATE), ready for a second use in this transaction.
        cursor.execute(
            f"WITH staged AS (DELETE FROM {stage} RETURNING *) "
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM staged ORDER BY tl_ord {tail}"
        )
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []
    finally:
        cursor.close()


READER_MMAP_BYTES = 1 << 30


class SqliteReader:
    """A plain sqlite3 connection for the API's hottest reads (token check,
    lookup), one per thread. Going through SQLAlchemy's pool and execution
    context cost more than the statements themselves (bench/api_lookup.py
    --profile-request). Read-only at the SQLite level (query_only), and each
    use is one snapshot: BEGIN ... COMMIT around the statements."""

    class _Dialect:
        name = "sqlite"

    dialect = _Dialect()

    def __init__(self, path: str):
        import sqlite3

        self._conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=60, cached_statements=256
        )
        # mmap: pages are read straight from the OS page cache instead of being
        # copied in by read(); on a large database that was a third of a lookup.
        for pragma in (
            "PRAGMA query_only=ON",
            "PRAGMA busy_timeout=60000",
            "PRAGMA cache_size=-65536",
            f"PRAGMA mmap_size={READER_MMAP_BYTES}",
        ):
            self._conn.execute(pragma)

    def rows(self, sql: str, params: tuple = ()) -> list:
        return self._conn.execute(sql, params).fetchall()

    @contextmanager
    def snapshot(self) -> Iterator["SqliteReader"]:
        self._conn.execute("BEGIN")
        try:
            yield self
        finally:
            self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()


def _numbered(sql: str) -> str:
    """? placeholders as PostgreSQL's $1, $2, ... (for PREPARE)."""
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


class PostgresReader:
    """The PostgreSQL counterpart of SqliteReader: one plain psycopg2 connection for the
    API's hottest reads, with none of SQLAlchemy's pool and execution context. Read-only at
    the server (default_transaction_read_only) and in autocommit: each statement reads the
    latest committed state, as each did in the READ COMMITTED transaction SQLAlchemy's
    connection opened, without its BEGIN and ROLLBACK. One REPEATABLE READ transaction per
    lookup (one state for all its statements, as SqliteReader's snapshot gives) cost a
    third more (in process, 20,000 contacts, 1,000 lookups: 0.75 against 0.57 ms of client
    CPU, 1.05 against 0.78 ms of the server's), and the lookup does not need it: rows that
    went between two statements are left out. Not shared between threads at once:
    PostgresReaders hands each call its own.

    Each statement is prepared on the server the first time this connection runs it (PREPARE
    in the same round trip as its first EXECUTE): planning was three quarters of the server's
    time in a lookup (EXPLAIN ANALYZE, 20,000 contacts: 1.27 ms planning, 0.39 ms execution
    in 8 statements), and a prepared statement is planned once. The names carry a random
    part, so that behind a pooler that shares server sessions (transaction pooling) a name is
    never another client's statement: a statement not found there makes this reader stop
    preparing (PostgresReaders runs the call again)."""

    class _Dialect:
        name = "postgresql"

    dialect = _Dialect()
    MAX_PREPARED = 256  # statements differ by the length of their IN lists: bounded per connection

    def __init__(self, conn):
        conn.set_session(readonly=True, autocommit=True)
        self._conn = conn
        self._cur = conn.cursor()
        self._prepared: dict[str, str] = {}
        self._names = itertools.count()
        self._prefix = f"tl_{secrets.token_hex(4)}_"
        self.prepare = True

    @property
    def broken(self) -> bool:
        """The connection is gone (server restarted, backend terminated, network cut)."""
        return self._conn.closed != 0

    def rows(self, sql: str, params: tuple = ()) -> list:
        execute = self._prepared.get(sql)
        if execute is not None:
            self._cur.execute(execute, params)
        elif self.prepare and len(self._prepared) < self.MAX_PREPARED:
            name = f"{self._prefix}{next(self._names)}"
            marks = ", ".join(["%s"] * sql.count("?"))
            execute = f"EXECUTE {name}({marks})" if marks else f"EXECUTE {name}"
            self._cur.execute(f"PREPARE {name} AS {_numbered(sql)}; {execute}", params)
            self._prepared[sql] = execute
        else:
            self._cur.execute(_PG_SQL.get(sql) or _PG_SQL.setdefault(sql, sql.replace("?", "%s")), params)
        return self._cur.fetchall()

    def stop_preparing(self) -> None:
        """The server session lost this reader's prepared statements (DISCARD ALL, a pooler)."""
        self.prepare = False
        self._prepared.clear()

    def close(self) -> None:
        self._conn.close()


class PostgresReaders:
    """Idle PostgresReaders for the API's thread pool, the most recently used first.

    No pre-ping (SQLAlchemy's pool_pre_ping is a round trip per checkout): a reader whose
    connection turns out broken is dropped together with every idle one (they went with the
    same server), and the call runs once more on a new connection. The calls are reads, so
    running one again is safe. At most as many readers exist as calls run at once, which
    the API bounds to MAX_OPEN (app/api/deps.py, _reader_limiter, says why); that many are
    kept for the next burst."""

    MAX_OPEN = 8

    def __init__(self, engine: Engine):
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        cparams = {**cparams, "options": utc_session(cparams.get("options"))}  # as the engine's sessions
        self._connect = lambda: engine.dialect.loaded_dbapi.connect(*cargs, **cparams)
        self._idle: list[PostgresReader] = []
        self._lock = threading.Lock()

    def run(self, func, *args):
        """func(reader, *args) on an idle reader (or a new one)."""
        import psycopg2
        import psycopg2.errors

        reader = self._take()
        try:
            try:
                return func(reader, *args)
            except (psycopg2.errors.InvalidSqlStatementName, psycopg2.errors.DuplicatePreparedStatement):
                if not reader.prepare:
                    raise
                reader.stop_preparing()
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                if not reader.broken:
                    raise
                reader.close()
                self.close()
                reader = PostgresReader(self._connect())
            return func(reader, *args)
        finally:
            self._give(reader)

    def _take(self) -> PostgresReader:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return PostgresReader(self._connect())

    def _give(self, reader: PostgresReader) -> None:
        if not reader.broken:
            with self._lock:
                if len(self._idle) < self.MAX_OPEN:
                    self._idle.append(reader)
                    return
        reader.close()

    def close(self) -> None:
        """Close the idle readers (those in use are closed when they come back broken, or kept)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for reader in idle:
            reader.close()


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (None for other databases or in-memory SQLite)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    return path if path and path != ":memory:" else None


_PG_SQL: dict[str, str] = {}


def raw_rows(conn, sql: str, params: tuple = ()) -> list:
    """Rows of hand-written SQL (with ? placeholders) run straight on the driver,
    for hot reads where compiling SQLAlchemy statements costs more than running
    them. conn is a SQLAlchemy Connection, a SqliteReader or a PostgresReader."""
    if isinstance(conn, (SqliteReader, PostgresReader)):
        return conn.rows(sql, params)
    if conn.dialect.name != "sqlite":
        sql = _PG_SQL.get(sql) or _PG_SQL.setdefault(sql, sql.replace("?", "%s"))
    return conn.exec_driver_sql(sql, params).fetchall()
