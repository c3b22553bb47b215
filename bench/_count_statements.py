#!/usr/bin/env python
"""Run the Threadline CLI (`python bench/_count_statements.py OUT.json sync --once ...`) and
write how many SQL statements it sent, and on PostgreSQL how many round trips to the
server they took, to OUT.json (bench/imap_sync.py --statements).

- statements: SQLAlchemy's before_cursor_execute hook counts what goes through SQLAlchemy
  (an executemany once per parameter set, since the server runs one statement per set even
  when the driver batches them into one request; a multi-row VALUES page is one statement);
  on PostgreSQL a driver cursor subclass adds what the bulk paths send on the raw cursor
  (COPY, execute_values pages) and the pool's pre-ping.
- round trips (PostgreSQL): every request the client waits for an answer to. psycopg2 speaks
  the simple query protocol, so one execute() is one round trip, an executemany() one per
  parameter set, a COPY one, and a transaction adds its implicit BEGIN and its COMMIT or
  ROLLBACK. SQLite runs in-process: no round trips.

Counting costs a Python call per statement (microseconds against milliseconds per batch).
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
from collections import Counter
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

COUNTS: Counter = Counter()
TRIPS_BY_STATEMENT: Counter = Counter()  # PostgreSQL round trips by the statement's first words
_local = threading.local()  # inside an execution SQLAlchemy already counted
_PID = os.getpid()


def _install() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        # A true executemany gets a list of parameter sets; insertmanyvalues' pages come
        # here one statement each, with one flat set of parameters.
        sets = parameters if executemany and isinstance(parameters, list) else []
        many = bool(sets) and isinstance(sets[0], (dict, tuple, list))
        COUNTS[f"{conn.dialect.name}.statements"] += len(parameters) if many else 1
        _local.inside = True

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        _local.inside = False

    @event.listens_for(Engine, "handle_error")
    def _error(ctx):  # noqa: ANN001
        _local.inside = False

    try:
        import psycopg2
        import psycopg2.extensions as ext
    except ImportError:
        return

    def begin_trip(conn, query, trips: int = 1) -> None:  # noqa: ANN001
        # psycopg2 sends BEGIN on its own, a round trip before the first statement of a transaction.
        if not conn.autocommit and conn.status == ext.STATUS_READY:
            COUNTS["postgresql.round_trips"] += 1
            TRIPS_BY_STATEMENT["BEGIN"] += 1
        COUNTS["postgresql.round_trips"] += trips
        text = query.decode() if isinstance(query, bytes) else str(query)
        TRIPS_BY_STATEMENT[" ".join(text.split()[:6])[:80]] += trips

    class CountingCursor(ext.cursor):
        def execute(self, query, vars=None):  # noqa: A002, ANN001
            begin_trip(self.connection, query)
            if not getattr(_local, "inside", False):
                COUNTS["postgresql.statements"] += 1
            return super().execute(query, vars)

        def executemany(self, query, vars_list):  # noqa: ANN001
            vars_list = list(vars_list)
            begin_trip(self.connection, query, len(vars_list))
            if not getattr(_local, "inside", False):
                COUNTS["postgresql.statements"] += len(vars_list)
            return super().executemany(query, vars_list)

        def copy_expert(self, sql, file, size=8192):  # noqa: ANN001
            begin_trip(self.connection, sql)
            COUNTS["postgresql.statements"] += 1
            return super().copy_expert(sql, file, size)

    class CountingConnection(ext.connection):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.cursor_factory = CountingCursor

        def commit(self):
            if self.status != ext.STATUS_READY:
                COUNTS["postgresql.round_trips"] += 1
                COUNTS["postgresql.commits"] += 1
                TRIPS_BY_STATEMENT["COMMIT"] += 1
            return super().commit()

        def rollback(self):
            if self.status != ext.STATUS_READY:
                COUNTS["postgresql.round_trips"] += 1
                TRIPS_BY_STATEMENT["ROLLBACK"] += 1
            return super().rollback()

    real_connect = psycopg2.connect

    def connect(*args, **kwargs):  # noqa: ANN001
        kwargs.setdefault("connection_factory", CountingConnection)
        return real_connect(*args, **kwargs)

    psycopg2.connect = connect


def _dump(path: str) -> None:
    if os.getpid() == _PID:
        out = dict(COUNTS)
        out["postgresql.round_trips_by_statement"] = dict(TRIPS_BY_STATEMENT.most_common())
        Path(path).write_text(json.dumps(out))


def main() -> None:
    out = sys.argv[1]
    sys.argv = ["threadline", *sys.argv[2:]]
    _install()
    atexit.register(_dump, out)
    from app.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
