from datetime import datetime, timezone


def utcnow() -> datetime:
    """Aware UTC; SQLModel stores it as UTC on SQLite and as timestamptz on PostgreSQL."""
    return datetime.now(timezone.utc)
