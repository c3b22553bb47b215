"""A small TCP shim in front of Dovecot that answers as Gmail's IMAP does when an
account is over its limits (README.md, "Gmail's limits"), forwarding everything else.

Line-based on the client side (Threadline's commands are single lines: LOGIN, AUTHENTICATE
with SASL-IR, UID FETCH ...); the server's bytes are forwarded as they come, except the
tagged answer of a FETCH when `throttle_ok` is set. Modes, set at any time:

- `refuse_login`: LOGIN / AUTHENTICATE answer `NO [ALERT] Too many simultaneous connections. (Failure)`;
- `fetch_answer`: UID FETCH is not forwarded and answers `NO <text>` (e.g. `[OVERQUOTA] ...`);
- `throttle_ok`: the server's `OK` to a FETCH becomes `OK Success [THROTTLED]`.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.servers import LOOPBACK

TOO_MANY = "[ALERT] Too many simultaneous connections. (Failure)"
OVERQUOTA = "[OVERQUOTA] Account exceeded command or bandwidth limits. (Failure)"
THROTTLED_NO = "[THROTTLED] Too many commands, slow down. (Failure)"


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
            fetch_tags: set[bytes] = set()
            lock = threading.Lock()
            threading.Thread(target=self._down, args=(client, upstream, fetch_tags, lock), daemon=True).start()
            threading.Thread(target=self._up, args=(client, upstream, fetch_tags, lock), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, fetch_tags: set, lock: threading.Lock) -> None:
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
                    with lock:
                        client.sendall(tag + b" NO " + TOO_MANY.encode() + b"\r\n")
                    continue
                is_fetch = name == b"FETCH" or (name == b"UID" and len(words) > 1 and words[1] == b"FETCH")
                if is_fetch and self.fetch_answer:
                    with lock:
                        client.sendall(tag + b" NO " + self.fetch_answer.encode() + b"\r\n")
                    continue
                if is_fetch:
                    fetch_tags.add(tag)
                upstream.sendall(line)
        except OSError:
            pass
        finally:
            for s in (upstream, client):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _down(self, client: socket.socket, upstream: socket.socket, fetch_tags: set, lock: threading.Lock) -> None:
        """Server -> client; a FETCH's tagged OK is rewritten when throttle_ok is set."""
        reader = upstream.makefile("rb")
        try:
            for line in reader:
                tag = line.split(b" ", 1)[0]
                if tag in fetch_tags and line[len(tag) + 1 :].startswith(b"OK"):
                    fetch_tags.discard(tag)
                    if self.throttle_ok:
                        line = tag + b" OK Success [THROTTLED]\r\n"
                with lock:
                    client.sendall(line)
        except OSError:
            pass
        finally:
            for s in (upstream, client):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
