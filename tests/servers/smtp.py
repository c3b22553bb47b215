"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for the digest tests.

It asks for AUTH (LOGIN/PLAIN) with one user name and password, refuses recipients at
`refused.example`, and offers STARTTLS when given a TLS context (trustme's, in the tests).
"""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.servers.base import LOOPBACK, free_port

REFUSED_DOMAIN = "refused.example"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    authenticated_as: str | None


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().endswith("@" + REFUSED_DOMAIN):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg, login))  # type: ignore[arg-type] - policy.default gives EmailMessage
        return "250 Message accepted for delivery"


class SmtpServer:
    """`with SmtpServer(username, password) as s:` ... `s.host`, `s.port`, `s.received`."""

    def __init__(self, username: str = "digest", password: str = "s3cret", *, tls_context=None):
        self.username, self.password = username, password
        self.handler = _Handler()
        self.host = LOOPBACK
        self.port = free_port()

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == self.username
                and auth_data.password.decode() == self.password
            )
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        kwargs = {"tls_context": tls_context, "require_starttls": False} if tls_context is not None else {}
        self.controller = Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            authenticator=authenticator,
            auth_require_tls=tls_context is not None,
            auth_required=False,
            **kwargs,
        )

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
