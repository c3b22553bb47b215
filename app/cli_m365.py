"""Microsoft 365 commands: tenant apps and Graph mailboxes."""
from __future__ import annotations
