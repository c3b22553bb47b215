"""Secrets at rest: mailbox passwords and tokens are Fernet-encrypted.

The key never lives in the database. It comes from THREADLINE_SECRET_KEY or
from a key file created on first start with owner-only permissions.
"""
from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from app.settings import Settings

KEY_FILE_NAME = "secret.key"


class SecretError(Exception):
    """A stored secret cannot be decrypted with the configured key."""


def load_key(settings: Settings) -> bytes:
    if settings.secret_key:
        return settings.secret_key.encode()
    path = Path(settings.data_dir) / KEY_FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
    return path.read_bytes().strip()


class SecretBox:
    def __init__(self, key: bytes):
        self._fernet = Fernet(key)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretError("stored secret cannot be decrypted: wrong THREADLINE_SECRET_KEY?") from exc

    def __repr__(self) -> str:  # never show key material
        return "SecretBox(<hidden>)"


def secret_box(settings: Settings) -> SecretBox:
    return SecretBox(load_key(settings))
