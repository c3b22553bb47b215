"""IDLE on many mailboxes from one thread: a minimal IMAP session that logs in,
EXAMINEs the Inbox and then sits in IDLE on a non-blocking socket, so that a
selector (sync/idlehub.py) can hold thousands of them.

Only opening is blocking (connect, TLS, LOGIN, EXAMINE: run it in a small thread
pool); after that the session is driven by readiness: `on_readable()` says whether
new mail was announced, `renew()` ends IDLE and starts it again (the heartbeat:
the answer must come within the caller's deadline, or the link is dead).

imapclient is not used here because it blocks and keeps a buffered reader per
connection; IDLE needs only four commands and untagged lines.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
from typing import Callable

from connectors.base import BadDataError, ConnectorError, Fix, TransientError
from connectors.imap import ImapSettings, login_refused, translate

_LITERAL = re.compile(rb"\{(\d+)\}$")
_NEWS = re.compile(rb"^\* \d+ (EXISTS|RECENT)\b", re.I)
_QUOTABLE = re.compile(r"^[\x20-\x7e]*$")


class IdleSession:
    """One mailbox's Inbox held in IDLE. States: closed -> idling <-> renewing."""

    def __init__(
        self,
        settings: ImapSettings,
        password: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        oauth2_token: Callable[[], str] | None = None,
        folder: str = "INBOX",
    ):
        """oauth2_token: log in with SASL XOAUTH2 and this token instead of the password
        (Gmail); folder: the one held in IDLE (Gmail: All Mail, the one folder read)."""
        self.settings = settings
        self._password = password
        self._oauth2_token = oauth2_token
        self.folder = folder
        self._ssl_context = ssl_context
        self.sock: socket.socket | None = None
        self._buf = bytearray()
        self._tag = 0
        self.state = "closed"
        self._idle_tag = b""  # the IDLE command in progress
        self._waiting_for: bytes | None = None  # the ended IDLE whose answer completes a renewal

    def __repr__(self) -> str:
        s = self.settings
        return f"IdleSession({s.username}@{s.host}:{s.port}, {self.state})"

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    # -- opening (blocking) -------------------------------------------------------
    def open(self) -> None:
        """Connect, log in, EXAMINE INBOX and enter IDLE; then the socket is non-blocking."""
        s = self.settings
        what = "connecting"
        try:
            sock = socket.create_connection((s.host, s.port), timeout=s.timeout)
            self.sock = sock
            if s.security == "tls":
                self.sock = self._tls(sock)
            self._expect_greeting()
            if s.security == "starttls":
                self._command(b"STARTTLS")
                self.sock = self._tls(self.sock)
            what = "logging in"
            self._login()
            what = "waiting for new mail (IDLE)"
            self._command(b"EXAMINE INBOX" if self.folder.upper() == "INBOX" else b"EXAMINE " + _quoted(self.folder))
            self._start_idle()
            self._read_until_continuation()
            self.state = "idling"
            self.sock.setblocking(False)
        except ConnectorError:
            self.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - translated
            self.close()
            raise translate(exc, what) from exc

    def _tls(self, sock: socket.socket) -> ssl.SSLSocket:
        context = self._ssl_context or ssl.create_default_context()
        return context.wrap_socket(sock, server_hostname=self.settings.host)

    def _expect_greeting(self) -> None:
        line = self._read_line_blocking()
        if line.upper().startswith(b"* BYE"):
            raise TransientError(f"the server refused the connection: {_words(line)}")

    def _login(self) -> None:
        user, password = self.settings.username, self._password
        if self._oauth2_token is not None:
            # SASL XOAUTH2 with the initial response (https://developers.google.com/gmail/imap/xoauth2-protocol);
            # a refusal comes as a continuation carrying an error, answered with an empty line.
            raw = f"user={user}\x01auth=Bearer {self._oauth2_token()}\x01\x01".encode()
            tag = self._next_tag()
            self._send(tag + b" AUTHENTICATE XOAUTH2 " + base64.b64encode(raw) + b"\r\n")
            self._read_tagged(tag, secret=True, sasl=True)
            return
        if _QUOTABLE.match(user) and _QUOTABLE.match(password):
            self._command(b"LOGIN " + _quoted(user) + b" " + _quoted(password), secret=True)
            return
        # Non-ASCII: literals, each sent after the server's go-ahead.
        tag = self._next_tag()
        u, p = user.encode(), password.encode()
        self._send(tag + b" LOGIN {%d}\r\n" % len(u))
        self._read_until_continuation()
        self._send(u + b" {%d}\r\n" % len(p))
        self._read_until_continuation()
        self._send(p + b"\r\n")
        self._read_tagged(tag, secret=True)

    def _command(self, command: bytes, *, secret: bool = False) -> None:
        tag = self._next_tag()
        self._send(tag + b" " + command + b"\r\n")
        self._read_tagged(tag, secret=secret)

    def _read_tagged(self, tag: bytes, *, secret: bool = False, sasl: bool = False) -> None:
        while True:
            line = self._read_line_blocking()
            if sasl and line.startswith(b"+"):
                self._send(b"\r\n")
                continue
            if line.startswith(tag + b" "):
                status = line[len(tag) + 1 :].split(b" ", 1)[0].upper()
                if status == b"OK":
                    return
                words = _words(line[len(tag) + 1 :])
                if secret:  # LOGIN: the server's answer, never our command
                    raise login_refused(words, Fix.GMAIL_IMAP if sasl else Fix.PASSWORD)
                raise BadDataError(f"server refused while waiting for new mail (IDLE): {words}")
            if line.upper().startswith(b"* BYE"):
                raise TransientError(f"connection lost while waiting for new mail (IDLE): {_words(line)}")

    def _read_until_continuation(self) -> None:
        while True:
            line = self._read_line_blocking()
            if line.startswith(b"+"):
                return
            if self._idle_tag and line.startswith(self._idle_tag + b" "):
                raise BadDataError(f"server refused IDLE: {_words(line)}")
            if line.upper().startswith(b"* BYE"):
                raise TransientError(f"connection lost while waiting for new mail (IDLE): {_words(line)}")

    def _read_line_blocking(self) -> bytes:
        while True:
            line = self._take_line()
            if line is not None:
                return line
            data = self.sock.recv(65536)  # type: ignore[union-attr]
            if not data:
                raise TransientError("connection lost while waiting for new mail (IDLE): the server closed it")
            self._buf += data

    # -- driven by the selector (non-blocking) -------------------------------------
    def on_readable(self) -> bool:
        """Read what arrived; True when the server announced new mail in the Inbox.
        Raises a TransientError when the link is gone."""
        try:
            while True:
                try:
                    data = self.sock.recv(65536)  # type: ignore[union-attr]
                except (BlockingIOError, ssl.SSLWantReadError, InterruptedError):
                    break
                if not data:
                    raise TransientError("connection lost while waiting for new mail (IDLE): the server closed it")
                self._buf += data
        except ConnectorError:
            raise
        except OSError as exc:
            raise translate(exc, "waiting for new mail (IDLE)") from exc
        news = False
        while (line := self._take_line()) is not None:
            news = self._on_line(line) or news
        return news

    def _on_line(self, line: bytes) -> bool:
        if _NEWS.match(line):
            return True
        if line.upper().startswith(b"* BYE"):
            raise TransientError(f"connection lost while waiting for new mail (IDLE): {_words(line)}")
        if line.startswith(b"+"):
            if self.state == "renewing" and self._waiting_for is None:
                self.state = "idling"  # the new IDLE is on
            return False
        tag, _, rest = line.partition(b" ")
        if self._waiting_for is not None and tag == self._waiting_for:
            if not rest.upper().startswith(b"OK"):
                raise TransientError(f"the server ended IDLE badly: {_words(rest)}")
            self._waiting_for = None
            self._start_idle()  # the old IDLE is over; begin the next
        elif tag == self._idle_tag:  # an answer to an IDLE we did not end: refused
            raise BadDataError(f"server refused IDLE: {_words(rest)}")
        return False

    def renew(self) -> None:
        """End IDLE and start it again (RFC 2177 asks for less than 29 minutes; the
        round trip is also how a stalled link is found). The answer completes in
        on_readable; until then state is 'renewing'."""
        self._waiting_for = self._idle_tag
        self.state = "renewing"
        self._send(b"DONE\r\n")

    def _start_idle(self) -> None:
        self._idle_tag = self._next_tag()
        self._send(self._idle_tag + b" IDLE\r\n")

    # -- plumbing -----------------------------------------------------------------
    def _next_tag(self) -> bytes:
        self._tag += 1
        return b"t%d" % self._tag

    def _send(self, data: bytes) -> None:
        sock = self.sock
        assert sock is not None
        try:
            if sock.gettimeout() == 0.0:  # a few bytes: never worth a write-readiness state
                sock.settimeout(self.settings.timeout)
                try:
                    sock.sendall(data)
                finally:
                    sock.setblocking(False)
            else:
                sock.sendall(data)
        except OSError as exc:
            raise translate(exc, "waiting for new mail (IDLE)") from exc

    def _take_line(self) -> bytes | None:
        """One response line from the buffer (literals included), or None if incomplete."""
        start = 0
        while True:
            end = self._buf.find(b"\r\n", start)
            if end < 0:
                return None
            literal = _LITERAL.search(self._buf, start, end)
            if literal is None:
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                return line
            start = end + 2 + int(literal.group(1))
            if start > len(self._buf):
                return None

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self.state = "closed"
        self._buf.clear()
        if sock is None:
            return
        try:
            sock.close()
        except OSError:
            pass


def _quoted(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


def _words(line: bytes) -> str:
    return line.decode("utf-8", "replace").strip()[:300]
