"""What code sends to the database, and how SQLite plans it: for the tests that hold a query
to its index (a plan that walks a whole table is the regression they catch)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine

from app.db import read_only


@contextmanager
def statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Every (statement, parameters) the engine sends inside the block, in order."""
    seen: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def sqlite_plan(engine: Engine, sql: str, params: Any) -> str:
    """SQLite's EXPLAIN QUERY PLAN of one statement, its steps joined by spaces."""
    with read_only(engine) as conn:
        return " ".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())
