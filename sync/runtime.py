"""What sync needs from the running process: the database engine, the secret box and the settings.

A Protocol, so sync depends only on app's settings, db and crypto: app.runtime.Runtime (built by the
CLI and the web app) is one, and a test or a benchmark can pass any object with these three values.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.engine import Engine

from app.crypto import SecretBox
from app.settings import Settings


class Runtime(Protocol):
    settings: Settings
    engine: Engine
    box: SecretBox
