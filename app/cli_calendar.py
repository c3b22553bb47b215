"""`threadline calendar ...`: calendar accounts (CalDAV)."""
from __future__ import annotations
