"""Administration commands: rules, privacy, audit, key rotation."""
from __future__ import annotations
