from datetime import datetime, timezone
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import Table
from sqlmodel import SQLModel

if TYPE_CHECKING:

    class TableModel(SQLModel):
        """What the type checker sees of a model declared with table=True: SQLModel builds its
        `__table__` (the Core Table sync's statements use) but its stubs do not declare it."""

        __table__: ClassVar[Table]
else:
    TableModel = SQLModel  # at run time every model is a plain SQLModel, as before


def utcnow() -> datetime:
    """Aware UTC; SQLModel stores it as UTC on SQLite and as timestamptz on PostgreSQL."""
    return datetime.now(timezone.utc)
