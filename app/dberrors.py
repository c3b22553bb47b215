"""A database's own trouble in words an admin can act on: the disk is full, the database is
read-only, the connection was lost.

A driver's message is never shown: it can carry the SQL statement and its parameters
(addresses, subjects), which only the log gets (sync/engine.py: _describe). The condition is
read from the error's code instead: SQLite's result code (`sqlite3.Error.sqlite_errorcode`, its
primary code in the low byte) and PostgreSQL's SQLSTATE (`psycopg2.Error.pgcode`). Anything
else, a constraint violation for one, is not the database's trouble but a fault in Threadline,
and gets None.
"""

from __future__ import annotations

# SQLite primary result codes (https://www.sqlite.org/rescode.html). Not SQLITE_LOCKED (a conflict
# within one connection: Threadline's own fault) nor SQLITE_NOMEM (this process out of memory).
_SQLITE: dict[int, str] = {
    5: "the database stayed locked by another connection",  # SQLITE_BUSY, after busy_timeout
    8: "the database file is read-only",  # SQLITE_READONLY: permissions, a read-only mount
    10: "the disk reported an I/O error on the database file",  # SQLITE_IOERR
    11: "the database file is damaged",  # SQLITE_CORRUPT
    13: "the database's disk is full",  # SQLITE_FULL (or its max_page_count reached)
    14: "the database file cannot be opened",  # SQLITE_CANTOPEN
    26: "the database file is damaged",  # SQLITE_NOTADB
}

# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html), exact codes
# first, then classes (the first two characters).
_POSTGRES: dict[str, str] = {
    "53100": "the database server's disk is full",  # disk_full
    "53200": "the database server ran out of memory",  # out_of_memory
    "53300": "the database server has no free connection",  # too_many_connections
    "25006": "the database is read-only (a standby server, or one set read-only)",  # read_only_sql_transaction
    "42501": "the database user lacks a privilege it needs",  # insufficient_privilege
    "57014": "a statement was cancelled (the server's statement timeout, or an administrator)",  # query_canceled
    "57P01": "the database server shut down",  # admin_shutdown
    "57P02": "the database server crashed and restarted",  # crash_shutdown
    "57P03": "the database server is starting up or shutting down",  # cannot_connect_now
    "58030": "the database server's disk reported an I/O error",  # io_error
    "XX001": "the database server found damaged data",  # data_corrupted
    "XX002": "the database server found a damaged index",  # index_corrupted
    "08P01": "",  # protocol_violation: a fault of the client, not the connection
}
_POSTGRES_CLASSES: dict[str, str] = {
    "08": "the connection to the database server was lost",  # connection_exception
    "53": "the database server ran out of a resource",  # insufficient_resources
}
_UNREACHABLE = "the database server could not be reached, or the connection to it was lost"


def database_trouble(exc: BaseException) -> str | None:
    """What is wrong with the database itself, if that is what `exc` (a SQLAlchemy DBAPIError or a
    driver's error) says; None otherwise."""
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _SQLITE.get(code & 0xFF)
    state = getattr(orig, "pgcode", None)
    if isinstance(state, str) and state:
        said = _POSTGRES.get(state)
        return (said or None) if said is not None else _POSTGRES_CLASSES.get(state[:2])
    if getattr(exc, "connection_invalidated", False):
        return _UNREACHABLE  # SQLAlchemy's own judgement: the statement failed because the connection went
    if type(orig).__name__ == "OperationalError" and type(orig).__module__.startswith("psycopg2"):
        return _UNREACHABLE  # psycopg2 gives no SQLSTATE when there is no connection (server down, cut)
    return None


def is_database_error(exc: BaseException) -> bool:
    """A driver's error, raw or wrapped by SQLAlchemy: its text may quote SQL and parameters."""
    return isinstance(exc, DATABASE_ERRORS)


def _database_errors() -> tuple[type[BaseException], ...]:
    import sqlite3

    from sqlalchemy.exc import DBAPIError

    try:
        import psycopg2
    except ImportError:  # SQLite only
        return (DBAPIError, sqlite3.Error)
    return (DBAPIError, sqlite3.Error, psycopg2.Error)


# What a database statement can raise: SQLAlchemy's wrapper, or a driver's own error from the plain
# readers and bulk paths (app/db.py). For the API's and the CLI's one mapping of database trouble.
DATABASE_ERRORS = _database_errors()
