"""Helpers shared by the app tests: hand-written RFC 5322 messages."""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime


def rfc5322(
    *,
    frm: str,
    to: str,
    subject: str,
    date: datetime | None,
    mid: str | None,
    cc: str | None = None,
    headers: tuple[str, ...] = (),
    body: str = "Hello there.\r\n",
    in_reply_to: str | None = None,
) -> bytes:
    lines = []
    if frm is not None:
        lines.append(f"From: {frm}")
    lines.append(f"To: {to}")
    if cc:
        lines.append(f"Cc: {cc}")
    lines.append(f"Subject: {subject}")
    if date is not None:
        lines.append(f"Date: {format_datetime(date)}")
    if mid:
        lines.append(f"Message-ID: <{mid}>")
    if in_reply_to:
        lines.append(f"In-Reply-To: <{in_reply_to}>")
        lines.append(f"References: <{in_reply_to}>")
    lines.append("MIME-Version: 1.0")
    lines.append("Content-Type: text/plain; charset=utf-8")
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8")


def new_imap_user(dovecot, created: list[str], password: str | None = None):
    """A fresh user on the session's Dovecot (module-scoped fixtures cannot use ``imap_user``)."""
    import secrets

    from tests.conftest import ImapUser

    name, password = f"u{secrets.token_hex(5)}", password or secrets.token_urlsafe(12)
    dovecot.add_user(name, password)
    created.append(name)
    return ImapUser(dovecot.host, dovecot.port, name, password, dovecot)


def remove_imap_users(dovecot, created: list[str]) -> None:
    for name in created:
        try:
            dovecot.remove_user(name)
        except Exception:  # pragma: no cover - best effort
            pass
