"""Sending mail through the SMTP server the admin configured (the daily digest, the test email).

Standard library only (smtplib). Each step is reported on its own, so the console can
say which one failed: connect, tls, auth, sender, recipient, data. The password is
never part of a message or a log line: smtplib's exceptions carry the server's answer,
which is what is kept.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses

SECURITY = ("starttls", "tls", "none")
STEPS = ("connect", "tls", "auth", "sender", "recipient", "data")
TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    security: str  # starttls | tls (implicit, usually 465) | none
    username: str | None
    password: str | None
    from_address: str

    def __repr__(self) -> str:  # never show the password
        return f"SmtpServer({self.host}:{self.port}, {self.security}, user={self.username!r})"


class SmtpFailure(Exception):
    """A step of sending failed; `step` is one of STEPS, `detail` what the server or the network said."""

    def __init__(self, step: str, detail: str):
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail


def _answer(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return f"{exc.smtp_code} {text}".strip()


def _connect(server: SmtpServer, context: ssl.SSLContext | None) -> smtplib.SMTP:
    try:
        if server.security == "tls":
            return smtplib.SMTP_SSL(server.host, server.port, timeout=TIMEOUT_SECONDS, context=context)
        return smtplib.SMTP(server.host, server.port, timeout=TIMEOUT_SECONDS)
    except ssl.SSLError as exc:
        raise SmtpFailure("tls", f"the TLS handshake with {server.host}:{server.port} failed: {exc}") from None
    except smtplib.SMTPResponseException as exc:
        raise SmtpFailure("connect", f"{server.host}:{server.port} refused the connection: {_answer(exc)}") from None
    except (OSError, smtplib.SMTPException) as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else str(exc) or type(exc).__name__
        raise SmtpFailure("connect", f"could not reach {server.host}:{server.port}: {reason}") from None


def send(server: SmtpServer, messages: list[EmailMessage], *, context: ssl.SSLContext | None = None) -> None:
    """Send the messages over one connection; the first failing step raises SmtpFailure.

    `context` is the TLS context (the system's trust store by default; tests pass one
    that trusts their own certificate)."""
    context = context or ssl.create_default_context()
    client = _connect(server, context)
    try:
        try:
            client.ehlo()
            if server.security == "starttls":
                if not client.has_extn("starttls"):
                    raise SmtpFailure("tls", f"{server.host} does not offer STARTTLS")
                client.starttls(context=context)
                client.ehlo()
        except ssl.SSLError as exc:
            raise SmtpFailure("tls", f"the TLS handshake with {server.host} failed: {exc}") from None
        except smtplib.SMTPResponseException as exc:
            raise SmtpFailure("tls", f"{server.host} refused STARTTLS: {_answer(exc)}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SmtpFailure("connect", f"{server.host} closed the connection: {exc}") from None
        if server.username:
            try:
                client.login(server.username, server.password or "")
            except smtplib.SMTPAuthenticationError as exc:
                raise SmtpFailure("auth", f"{server.host} refused the user name or password: {_answer(exc)}") from None
            except smtplib.SMTPNotSupportedError:
                raise SmtpFailure("auth", f"{server.host} does not offer authentication (AUTH) here") from None
            except smtplib.SMTPException as exc:
                raise SmtpFailure("auth", f"signing in to {server.host} failed: {exc}") from None
        for msg in messages:
            _send_one(client, server, msg)
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


def _send_one(client: smtplib.SMTP, server: SmtpServer, msg: EmailMessage) -> None:
    """MAIL, RCPT, DATA one by one (rather than sendmail) so a refusal names its step."""
    recipients = [address for _, address in getaddresses([str(msg["To"])]) if address]
    try:
        code, answer = client.mail(server.from_address)
        if code != 250:
            raise SmtpFailure("sender", f"{server.host} refused the sender {server.from_address}: {code} {answer!r}")
        for rcpt in recipients:
            code, answer = client.rcpt(rcpt)
            if code not in (250, 251):
                client.rset()
                detail = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer)
                raise SmtpFailure("recipient", f"{server.host} refused the recipient {rcpt}: {code} {detail}")
        # CRLF line ends: smtplib sends bytes as they are, and a server reads lines by CRLF.
        code, answer = client.data(msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))
        if code != 250:
            raise SmtpFailure("data", f"{server.host} refused the message: {code} {answer!r}")
    except smtplib.SMTPResponseException as exc:
        raise SmtpFailure("data", f"{server.host} refused the message: {_answer(exc)}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise SmtpFailure("connect", f"{server.host} closed the connection: {exc}") from None
