"""Secrets at rest: mailbox passwords and tokens are Fernet-encrypted.

The key never lives in the database. It comes from THREADLINE_SECRET_KEY or
from a key file created on first start with owner-only permissions.

Key rotation (`threadline secrets rotate-key`, see rotate_key below) writes the
new key to secret.key.new, keeps the current one as secret.key.old, re-encrypts
every stored secret in one transaction, then moves the new key into place and
deletes the old one. Until that last step every key file present is tried for
decryption (MultiFernet), so a rotation interrupted at any point leaves every
secret readable, and running it again finishes the job.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.settings import Settings

KEY_FILE_NAME = "secret.key"
OLD_SUFFIX, NEW_SUFFIX = ".old", ".new"


class SecretError(Exception):
    """A stored secret cannot be decrypted with the configured key."""


def _key_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / KEY_FILE_NAME


def _write_key_file(path: Path, key: bytes) -> None:
    """Write a key file with owner-only permissions, atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_key(settings: Settings) -> bytes:
    if settings.secret_key:
        return settings.secret_key.encode()
    path = _key_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
    return path.read_bytes().strip()


def load_keys(settings: Settings) -> list[bytes]:
    """The current key first, then keys of an unfinished rotation (new, old) for decryption only."""
    keys = [load_key(settings)]
    if not settings.secret_key:
        base = _key_path(settings)
        for suffix in (NEW_SUFFIX, OLD_SUFFIX):
            extra = base.with_name(base.name + suffix)
            if extra.exists():
                key = extra.read_bytes().strip()
                if key and key not in keys:
                    keys.append(key)
    return keys


class SecretBox:
    def __init__(self, key: bytes | list[bytes]):
        keys = [key] if isinstance(key, bytes) else list(key)
        self._primary = keys[0]
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretError("stored secret cannot be decrypted: wrong THREADLINE_SECRET_KEY?") from exc

    def derive(self, purpose: str) -> bytes:
        """A separate key for another use (the console's sign-in forms), derived from the current key."""
        return hmac.new(self._primary, f"threadline:{purpose}".encode(), hashlib.sha256).digest()

    def __repr__(self) -> str:  # never show key material
        return "SecretBox(<hidden>)"


def secret_box(settings: Settings) -> SecretBox:
    return SecretBox(load_keys(settings))


# Every encrypted column: (table, id column, secret column).
ENCRYPTED_COLUMNS = (
    ("mailbox", "id", "secret_enc"),
    ("m365tenant", "id", "secret_enc"),
    ("googleworkspace", "id", "secret_enc"),
    ("graphsubscription", "id", "client_state_enc"),
    ("organisation", "id", "erasure_key_enc"),
    ("organisation", "id", "smtp_secret_enc"),
)


def rotate_key(settings: Settings, engine) -> dict:
    """Generate a new key and re-encrypt every stored secret with it.

    1. secret.key.new is written (0600) and the current key copied to secret.key.old;
    2. every secret column is re-encrypted with the new key in ONE transaction;
    3. secret.key.new replaces secret.key atomically (rename), then secret.key.old is removed.
    A crash anywhere leaves a readable database: load_keys() tries all three files.
    """
    from sqlalchemy import text

    if settings.secret_key:
        raise SecretError(
            "the key comes from THREADLINE_SECRET_KEY: rotate it by hand (decrypting needs the old "
            "key); key-file rotation only works with the key file in the data directory"
        )
    base = _key_path(settings)
    old_keys = load_keys(settings)  # current (+ leftovers of an interrupted rotation)
    new_path, old_path = base.with_name(base.name + NEW_SUFFIX), base.with_name(base.name + OLD_SUFFIX)
    if new_path.exists() and new_path.read_bytes().strip():
        new_key = new_path.read_bytes().strip()  # resume an interrupted rotation with the same new key
    else:
        new_key = Fernet.generate_key()
        _write_key_file(new_path, new_key)
    _write_key_file(old_path, old_keys[0])
    rotator = MultiFernet([Fernet(new_key)] + [Fernet(k) for k in old_keys if k != new_key])
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        for table, id_col, col in ENCRYPTED_COLUMNS:
            rows = conn.execute(text(f"SELECT {id_col}, {col} FROM {table} WHERE {col} IS NOT NULL")).all()
            for row_id, token in rows:
                try:
                    fresh = rotator.rotate(token.encode()).decode()
                except InvalidToken as exc:
                    raise SecretError(
                        f"{table} {row_id}: stored secret cannot be decrypted with the current key; nothing was changed"
                    ) from exc
                conn.execute(text(f"UPDATE {table} SET {col} = :v WHERE {id_col} = :i"), {"v": fresh, "i": row_id})
            counts[table + "." + col] = len(rows)
    os.replace(new_path, base)
    old_path.unlink(missing_ok=True)
    return counts
