"""A minimal IMAP server that accepts SASL XOAUTH2 with tokens issued by the fake
authority (Exchange Online's IMAP with OAuth): greeting, CAPABILITY,
AUTHENTICATE XOAUTH2, LIST, LOGOUT. Enough to prove the login path, not a mail store."""

from __future__ import annotations

import base64
import json
import socket
import threading

from tests.servers import LOOPBACK, free_port


class FakeOAuthImap:
    def __init__(self, graph):
        self.graph = graph
        self.host, self.port = LOOPBACK, free_port()
        self.logins: list[str] = []  # users that authenticated
        self.failures = 0
        self._sock = None

    def start(self) -> "FakeOAuthImap":
        self._sock = socket.create_server((self.host, self.port))
        threading.Thread(target=self._accept, daemon=True, name="fake-oauth-imap").start()
        return self

    def stop(self) -> None:
        if self._sock:
            self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        f = conn.makefile("rwb", buffering=0)

        def send(line: str) -> None:
            f.write(line.encode() + b"\r\n")

        send("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR] Fake Exchange IMAP ready")
        user = None
        try:
            while True:
                raw = f.readline()
                if not raw:
                    return
                parts = raw.decode().strip().split(" ")
                tag, cmd = parts[0], parts[1].upper() if len(parts) > 1 else ""
                if cmd == "CAPABILITY":
                    send("* CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR" + (" IDLE" if user else ""))
                    send(f"{tag} OK CAPABILITY completed.")
                elif cmd == "AUTHENTICATE" and parts[2].upper() == "XOAUTH2":
                    if len(parts) > 3:
                        payload = parts[3]
                    else:
                        send("+ ")
                        payload = f.readline().decode().strip()
                    user = self._check(payload)
                    if user:
                        self.logins.append(user)
                        send(f"{tag} OK AUTHENTICATE completed.")
                    else:
                        self.failures += 1
                        send("+ " + base64.b64encode(json.dumps({"status": "401"}).encode()).decode())
                        f.readline()
                        send(f"{tag} NO AUTHENTICATE failed.")
                elif cmd == "LIST" and user:
                    for name, flags in (
                        ("INBOX", r"\HasNoChildren"),
                        ("Sent Items", r"\HasNoChildren \Sent"),
                        ("Junk Email", r"\HasNoChildren \Junk"),
                    ):
                        send(f'* LIST ({flags}) "/" "{name}"')
                    send(f"{tag} OK LIST completed.")
                elif cmd == "LOGOUT":
                    send("* BYE Microsoft Exchange Server IMAP4 server signing off.")
                    send(f"{tag} OK LOGOUT completed.")
                    return
                elif cmd == "NOOP":
                    send(f"{tag} OK NOOP completed.")
                else:
                    send(f"{tag} BAD Command Error. 12")
        except (OSError, IndexError, UnicodeDecodeError):
            return
        finally:
            conn.close()

    def _check(self, payload: str) -> str | None:
        try:
            text = base64.b64decode(payload).decode()
        except Exception:  # noqa: BLE001
            return None
        fields = dict(p.split("=", 1) for p in text.split("\x01") if "=" in p)
        auth = fields.get("auth", "")
        if not auth.startswith("Bearer "):
            return None
        holder = self.graph.imap_token_user(auth[7:])
        if holder is None or (holder != "app" and holder != fields.get("user", "").lower()):
            return None
        return fields.get("user", "").lower()
