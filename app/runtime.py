"""Process-wide wiring: settings -> engine (migrated) + secret box."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from app.crypto import SecretBox, secret_box
from app.db import make_engine, upgrade
from app.settings import Settings, get_settings


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    box: SecretBox


def open_runtime(settings: Settings | None = None, *, migrate: bool = True) -> Runtime:
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate:
        upgrade(settings.database_url)
    return Runtime(settings, make_engine(settings.database_url), secret_box(settings))
