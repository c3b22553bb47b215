"""Writing one rep's messages into a Maildir++ tree (what Dovecot serves in tests and benchmarks)."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from typing import Iterable

from demodata.model import Message


class _MaildirWriter:
    """Writes one user's messages into a Maildir++ tree (INBOX at the root)."""

    def __init__(
        self,
        root,
        owner_uid: int | None = None,
        owner_gid: int | None = None,
        crlf_to_lf: bool = False,
        host: str = "threadline-demo",
    ):
        self.root = os.fspath(root)
        self.uid = owner_uid
        self.gid = -1 if owner_gid is None else owner_gid
        self.crlf_to_lf = crlf_to_lf
        self.host = host
        self.pid = os.getpid()
        self.token = "%08x" % random.SystemRandom().getrandbits(32)
        self.seq = 0
        self.dirs: dict[str, str] = {}
        self.counts: Counter = Counter()
        self.recent_ts = time.time() - 2 * 86400

    def _chown(self, path):
        if self.uid is not None:
            os.chown(path, self.uid, self.gid)

    def _folder_dir(self, folder: str) -> str:
        d = self.dirs.get(folder)
        if d is not None:
            return d
        if folder.upper() == "INBOX":
            base = self.root
        else:
            name = folder.replace(".", "_").replace("/", ".")
            base = os.path.join(self.root, "." + name)
        for sub in ("", "cur", "new", "tmp"):
            p = os.path.join(base, sub) if sub else base
            os.makedirs(p, exist_ok=True)
            self._chown(p)
        if base != self.root:
            marker = os.path.join(base, "maildirfolder")
            if not os.path.exists(marker):
                open(marker, "wb").close()
                self._chown(marker)
        d = self.dirs[folder] = os.path.join(base, "cur")
        return d

    def add(self, m: Message) -> str:
        d = self._folder_dir(m.folder)
        data = m.raw.replace(b"\r\n", b"\n") if self.crlf_to_lf else m.raw
        ts = m.internaldate.timestamp()
        flags = "S"
        if m.folder == "INBOX" and ts > self.recent_ts and (self.seq % 3 == 0):
            flags = ""
        while True:
            self.seq += 1
            name = "%d.M%06dP%dQ%dR%s.%s,S=%d:2,%s" % (
                int(ts),
                self.seq % 1000000,
                self.pid,
                self.seq,
                self.token,
                self.host,
                len(data),
                flags,
            )
            path = os.path.join(d, name)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            break
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if self.uid is not None:
                os.fchown(fd, self.uid, self.gid)
        finally:
            os.close(fd)
        os.utime(path, (ts, ts))
        self.counts[m.folder] += 1
        return path

    def finish(self) -> None:
        folders = sorted(f for f in self.dirs if f.upper() != "INBOX")
        if folders:
            p = os.path.join(self.root, "subscriptions")
            with open(p, "w", encoding="utf-8") as fh:
                fh.write("".join(f + "\n" for f in folders))
            self._chown(p)


def write_maildir(
    root,
    messages: Iterable[Message],
    owner_uid: int | None = None,
    *,
    owner_gid: int | None = None,
    mailbox: str | None = None,
    crlf_to_lf: bool = False,
) -> dict[str, int]:
    """Write ONE user's messages into a Maildir++ tree at ``root``.

    INBOX is the root maildir, other folders are ``.Folder`` sub-maildirs
    (with a ``maildirfolder`` marker and a ``subscriptions`` file). Files go to
    ``cur/`` with unique names and mtime = ``internaldate``; INBOX mail from
    the last two days is partly left unseen. If ``mailbox`` is given, messages
    of other mailboxes are skipped; otherwise all messages must belong to the
    same mailbox (``ValueError`` if not). ``owner_uid``/``owner_gid`` chown
    what is written (needs privileges). ``crlf_to_lf`` stores LF line endings.
    Returns the number of messages written per folder.
    """
    w = _MaildirWriter(root, owner_uid, owner_gid, crlf_to_lf)
    os.makedirs(w.root, exist_ok=True)
    w._folder_dir("INBOX")
    owner = mailbox
    for m in messages:
        if owner is None:
            owner = m.mailbox
        elif m.mailbox != owner:
            if mailbox is not None:
                continue
            raise ValueError("write_maildir writes one user's mail: got %r after %r" % (m.mailbox, owner))
        w.add(m)
    w.finish()
    return dict(w.counts)
