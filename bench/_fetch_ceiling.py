#!/usr/bin/env python
"""The fetch-only ceiling: what one IMAP connection delivers when the client does nothing.

    .venv/bin/python bench/_fetch_ceiling.py HOST PORT USER PASSWORD

Logs in over a plain socket, EXAMINEs every folder and sends Threadline's own
FETCH items (built by connectors.imap.ImapConnector._fetch_items, snippet on,
as for an organisation with visibility "snippet") as one `UID FETCH 1:*` per
folder. The answer is read in 1 MiB chunks and thrown away; the only work is
looking for the tagged completion line. No parsing, no Python objects per
message: the time is the server's and the loopback's, which is the most any
client could get from this server on one connection. Prints one JSON line.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.imap import ImapConnector  # noqa: E402


def threadline_items() -> str:
    return ImapConnector._fetch_items(SimpleNamespace(capabilities=set(), want_snippet=True))  # type: ignore[arg-type]


class Link:
    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.n = 0
        self.bytes = 0
        self.sock.recv(4096)  # greeting

    def command(self, text: str, keep: bool = True) -> bytes:
        """Send one command and read up to its tagged answer; keep=False discards the
        answer chunk by chunk (only the last few bytes are kept to spot the tag)."""
        self.n += 1
        tag = b"C%d " % self.n
        self.sock.sendall(tag + text.encode() + b"\r\n")
        marker = b"\r\n" + tag
        kept = b"\r\n"
        recv = self.sock.recv
        while True:
            chunk = recv(1 << 20)
            if not chunk:
                raise SystemExit("connection closed")
            self.bytes += len(chunk)
            kept = (kept + chunk) if keep else (kept[-64:] + chunk)
            at = kept.rfind(marker)
            if at >= 0 and kept.endswith(b"\r\n"):
                line = kept[at + 2 :].split(b"\r\n", 1)[0]
                if not line[len(tag) :].upper().startswith(b"OK"):
                    raise SystemExit(f"{text.split()[0]} failed: {line!r}")
                return kept


def main() -> int:
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    items = threadline_items()
    t0 = time.perf_counter()
    link = Link(host, port)
    link.command(f'LOGIN "{user}" "{password}"')
    listing = link.command('LIST "" "*"')
    folders = [
        (line[line.rfind(b'"', 0, -1) + 1 : -1] if line.endswith(b'"') else line.rsplit(b" ", 1)[1]).decode()
        for line in listing.split(b"\r\n")
        if line.startswith(b"* LIST") and b"\\Noselect" not in line
    ]
    messages = 0
    t_fetch = 0.0
    for folder in folders:
        answer = link.command(f'EXAMINE "{folder}"')
        exists = [int(line.split()[1]) for line in answer.split(b"\r\n") if line.endswith(b" EXISTS")]
        messages += exists[0] if exists else 0
        t1 = time.perf_counter()
        if exists and exists[0]:
            link.command(f"UID FETCH 1:* ({items})", keep=False)
        t_fetch += time.perf_counter() - t1
    link.command("LOGOUT")
    wall = time.perf_counter() - t0
    print(
        json.dumps(
            {"messages": messages, "folders": folders, "seconds": wall, "fetch_seconds": t_fetch, "bytes": link.bytes}
        )
    )
    print(f"FETCH items: {items}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
