"""TCP shims in front of Dovecot that answer as Gmail's IMAP does (README.md).

`GmailLimitsShim`: an account over its limits ("Gmail's limits"), forwarding everything else.
Line-based on the client side (Threadline's commands are single lines: LOGIN, AUTHENTICATE
with SASL-IR, UID FETCH ...); the server's bytes are forwarded as they come (literals as
they are), except the tagged answer of a FETCH when `throttle_ok` is set. Modes, set at any time:

- `refuse_login`: LOGIN / AUTHENTICATE answer `NO [ALERT] Too many simultaneous connections. (Failure)`;
- `fetch_answer`: UID FETCH is not forwarded and answers `NO <text>` (e.g. `[OVERQUOTA] ...`);
- `throttle_ok`: the server's `OK` to a FETCH becomes `OK Success [THROTTLED]`.

`GmailShim` adds Gmail's IMAP extensions ("Gmail's own identifiers"): it advertises
`X-GM-EXT-1` and answers `X-GM-MSGID`, `X-GM-THRID` and `X-GM-LABELS` in FETCH from a
`GmailStore`, which holds each rep's Gmail messages (one message, its labels, its thread)
and puts their copies into Dovecot: All Mail and one folder per label, as Gmail's IMAP
shows them. Dovecot answers the rest. `hide_all_mail` leaves All Mail out of LIST, as
Gmail does when "Show in IMAP" is off for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes

from tests.servers import LOOPBACK

TOO_MANY = "[ALERT] Too many simultaneous connections. (Failure)"
OVERQUOTA = "[OVERQUOTA] Account exceeded command or bandwidth limits. (Failure)"
THROTTLED_NO = "[THROTTLED] Too many commands, slow down. (Failure)"

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class GmailLimitsShim:
    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.refuse_login = False
        self.fetch_answer: str | None = None
        self.throttle_ok = False
        self.commands: list[str] = []  # every client command line (verb and arguments, no secrets kept)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(32)
        self.host, self.port = LOOPBACK, self._listener.getsockname()[1]
        self._stopped = False
        threading.Thread(target=self._accept, name="gmail-shim", daemon=True).start()

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            session = _Session()
            threading.Thread(target=self._down, args=(client, upstream, session), daemon=True).start()
            threading.Thread(target=self._up, args=(client, upstream, session), daemon=True).start()

    # -- client -> server ---------------------------------------------------------------
    def _up(self, client: socket.socket, upstream: socket.socket, session: _Session) -> None:
        """Client -> server, line by line."""
        reader = client.makefile("rb")
        try:
            for line in reader:
                tag, _, rest = line.partition(b" ")
                verb = rest.split(b" ", 2)
                words = [w.upper().strip() for w in verb]
                name = words[0] if words else b""
                self.commands.append(" ".join(w.decode("ascii", "replace") for w in words[:2]))
                if name in (b"LOGIN", b"AUTHENTICATE") and self.refuse_login:
                    with session.lock:
                        client.sendall(tag + b" NO " + TOO_MANY.encode() + b"\r\n")
                    continue
                command = words[1] if name == b"UID" and len(words) > 1 else name
                if command == b"FETCH" and self.fetch_answer:
                    with session.lock:
                        client.sendall(tag + b" NO " + self.fetch_answer.encode() + b"\r\n")
                    continue
                if command == b"FETCH":
                    session.fetch_tags.add(tag)
                upstream.sendall(self._command(command, line, session))
        except OSError:
            pass
        finally:
            for s in (upstream, client):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _command(self, command: bytes, line: bytes, session: _Session) -> bytes:
        """The command line as Dovecot gets it (subclasses rewrite Gmail's extensions)."""
        return line

    # -- server -> client ---------------------------------------------------------------
    def _down(self, client: socket.socket, upstream: socket.socket, session: _Session) -> None:
        """Server -> client; a literal is passed on as it is, every other line through _answer."""
        reader = upstream.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    break
                tag = line.split(b" ", 1)[0]
                if tag in session.fetch_tags and line[len(tag) + 1 :].startswith(b"OK"):
                    session.fetch_tags.discard(tag)
                    if self.throttle_ok:
                        line = tag + b" OK Success [THROTTLED]\r\n"
                literal = _LITERAL.search(line) if line.endswith(b"}\r\n") else None
                data = reader.read(int(literal.group(1))) if literal else b""
                line = self._answer(line, session)
                if line:
                    with session.lock:
                        client.sendall(line + data)
        except OSError:
            pass
        finally:
            for s in (upstream, client):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _answer(self, line: bytes, session: _Session) -> bytes:
        """One line of the server's answer as the client gets it (b"": left out)."""
        return line


@dataclass
class _Session:
    """One client connection's state, shared by its two forwarding threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    fetch_tags: set = field(default_factory=set)
    gmail_items: tuple = ()  # the X-GM-* items the last FETCH asked for, in the order asked


# --- Gmail's own identifiers ------------------------------------------------------------

# Gmail numbers messages and threads with unsigned 64-bit integers (the decimal form of the
# hex ids of the web interface and the Gmail API). The fake's are above 2**63, so a client
# storing them as signed 64-bit numbers breaks at once.
_FIRST_ID = 0xF1A5_0000_0000_0000
# Gmail's system labels, as X-GM-LABELS names them, by the folder Dovecot keeps them in.
_SYSTEM_LABELS = {"INBOX": "\\Inbox", "Sent": "\\Sent", "Drafts": "\\Draft", "Starred": "\\Starred"}
ALL_MAIL = "All Mail"


@dataclass
class GmailMessage:
    """One Gmail message of one account: its ids, its labels (the folders it is shown in
    besides All Mail) and the X-GUID of each copy Dovecot holds (folder -> X-GUID)."""

    user: str
    msgid: int
    thrid: int
    raw: bytes
    labels: tuple[str, ...]
    internaldate: float
    message_id: str | None
    copies: dict[str, str] = field(default_factory=dict)


class GmailStore:
    """Reps' Gmail messages, put into Dovecot as Gmail's IMAP shows them. Tests play the
    senders and Gmail's threading: `deliver` a message with its labels (and the thread
    Gmail put it in, where its headers do not say), `reset_folder` (a new UIDVALIDITY, the
    messages kept)."""

    def __init__(self, dovecot):
        self.dovecot = dovecot
        self.messages: list[GmailMessage] = []
        self._by_guid: dict[str, GmailMessage] = {}
        self._ids = itertools.count(_FIRST_ID + 7, 7919)
        self._lock = threading.Lock()

    def deliver(
        self,
        user: str,
        raw: bytes,
        labels: tuple[str, ...] = ("INBOX",),
        *,
        thread: GmailMessage | None = None,
        when: float | None = None,
    ) -> GmailMessage:
        """One new message in `user`'s Gmail: in All Mail and under each label. Its thread is
        `thread`'s when given (Gmail also groups mail its headers do not link, by subject),
        else the thread of the message its In-Reply-To or References name in this account,
        else a thread of its own."""
        headers = message_from_bytes(raw)
        message_id = _angle(headers.get("Message-ID"))
        with self._lock:
            msgid = next(self._ids)
            if thread is None:
                named = [_angle(v) for v in (headers.get("In-Reply-To") or "").split()]
                named += [_angle(v) for v in (headers.get("References") or "").split()]
                thread = next(
                    (m for m in reversed(self.messages) if m.user == user and m.message_id and m.message_id in named),
                    None,
                )
            thrid = thread.thrid if thread is not None else next(self._ids)
            message = GmailMessage(user, msgid, thrid, raw, tuple(labels), when or time.time(), message_id)
            self.messages.append(message)
        for folder in (ALL_MAIL, *labels):
            self._put(message, folder)
        return message

    def reset_folder(self, user: str, folder: str) -> None:
        """The folder gets a new UIDVALIDITY (Dovecot recreates it) and shows the same
        messages again under new UIDs: their X-GM-MSGID and X-GM-THRID stay."""
        self.dovecot.recreate_folder(user, folder)
        for message in self.messages:
            if message.user == user and folder in (ALL_MAIL, *message.labels):
                with self._lock:
                    self._by_guid.pop(message.copies.pop(folder, ""), None)
                self._put(message, folder)

    def _put(self, message: GmailMessage, folder: str) -> None:
        flags = "\\Draft" if "Drafts" in message.labels else ""
        path = self.dovecot.deliver(
            message.user, message.raw, folder=folder, internaldate=message.internaldate, flags=flags
        )
        guid = path.name.split(":2,", 1)[0]  # Dovecot's X-GUID of a Maildir message: its file's base name
        with self._lock:
            message.copies[folder] = guid
            self._by_guid[guid] = message

    def find(self, guid: str) -> GmailMessage | None:
        with self._lock:
            return self._by_guid.get(guid)


def _angle(value) -> str | None:
    value = str(value or "").strip()
    return value.strip("<>") or None


_GMAIL_ITEM = re.compile(rb"^X-GM-(MSGID|THRID|LABELS)$", re.I)
_XGUID = re.compile(rb"\bX-GUID ([^\s()]+)")
_CAPABILITIES = re.compile(rb"(\bCAPABILITY [^\]\r\n]*)")
_DRAFT_LABEL = re.compile(rb'\bX-GM-LABELS (?:\\Draft|"\\\\Draft")', re.I)


class GmailShim(GmailLimitsShim):
    """Gmail's IMAP extensions (X-GM-EXT-1) over Dovecot: README.md, "Gmail's own identifiers"."""

    def __init__(self, host: str, port: int, store: GmailStore):
        self.store = store
        self.hide_all_mail = False
        super().__init__(host, port)

    def _command(self, command: bytes, line: bytes, session: _Session) -> bytes:
        if command == b"FETCH":
            return self._fetch_command(line, session)
        if command == b"SEARCH":
            # X-GM-LABELS as a search key: a draft's copies carry \Draft in Dovecot (GmailStore._put).
            return _DRAFT_LABEL.sub(b"DRAFT", line)
        return line

    def _fetch_command(self, line: bytes, session: _Session) -> bytes:
        """`[UID] FETCH set items [modifiers]` without the X-GM-* items, which Dovecot does not
        know, and with X-GUID instead (the copy's id, by which the store finds the message)."""
        head, items, tail = _split_fetch(line)
        if items is None:
            return line
        asked = tuple(i.upper() for i in items if _GMAIL_ITEM.match(i))
        session.gmail_items = asked
        if not asked:
            return line
        kept = [i for i in items if not _GMAIL_ITEM.match(i)] + [b"X-GUID"]
        return head + b"(" + b" ".join(kept) + b")" + tail

    def _answer(self, line: bytes, session: _Session) -> bytes:
        if b"CAPABILITY " in line and b"X-GM-EXT-1" not in line:
            line = _CAPABILITIES.sub(lambda m: m.group(1).rstrip() + b" X-GM-EXT-1", line, count=1)
        if self.hide_all_mail and line.startswith(b"* LIST ") and b"\\All" in line.split(b")", 1)[0]:
            return b""
        if b"X-GUID " in line and line.startswith(b"* "):
            line = _XGUID.sub(lambda m: self._gmail_values(m.group(1).decode(), session.gmail_items), line)
        return line

    def _gmail_values(self, guid: str, asked: tuple) -> bytes:
        message = self.store.find(guid)
        if message is None:  # put into Dovecot directly, not through the store: a message and thread of its own
            own = int.from_bytes(hashlib.blake2b(guid.encode(), digest_size=8).digest(), "big") | (1 << 63)
            msgid, thrid, labels = own, own, ()
        else:
            msgid, thrid, labels = message.msgid, message.thrid, message.labels
        out = []
        for item in asked:
            if item == b"X-GM-MSGID":
                out.append(b"X-GM-MSGID %d" % msgid)
            elif item == b"X-GM-THRID":
                out.append(b"X-GM-THRID %d" % thrid)
            else:
                names = [_SYSTEM_LABELS.get(label) or '"' + label.replace('"', '\\"') + '"' for label in labels]
                out.append(b"X-GM-LABELS (" + " ".join(names).encode() + b")")
        return b" ".join(out)


def _split_fetch(line: bytes) -> tuple[bytes, list[bytes] | None, bytes]:
    """(everything before the item list, the items, everything after it) of a FETCH command
    line; items None when the line is not one this fake understands."""
    m = re.match(rb"^(\S+ (?:UID )?FETCH \S+ )", line, re.I)
    if not m:
        return line, None, b""
    head, rest = m.group(1), line[m.end() :]
    if not rest.startswith(b"("):
        atom = re.match(rb"[^\s()]+", rest)
        if not atom:
            return line, None, b""
        return head, [atom.group(0)], rest[atom.end() :]
    items: list[bytes] = []
    depth, start = 0, 1
    for i in range(1, len(rest)):
        c = rest[i : i + 1]
        if c in (b"[", b"("):
            depth += 1
        elif c == b"]" or (c == b")" and depth):
            depth -= 1
        elif c == b")" or (c == b" " and depth == 0):
            if rest[start:i]:
                items.append(rest[start:i])
            start = i + 1
            if c == b")":
                return head, items, rest[i + 1 :]
    return line, None, b""
