"""A connector over the generated demo corpus, so `serve --demo` exercises the
real engine (claims, batches, cursors, ingest) without any mail server."""
from __future__ import annotations

from datetime import datetime
from typing import Iterator

from connectors.base import BadDataError, BadRecord, Batch, Folder
from connectors.mailparse import parse_message_headers

FOLDERS = (Folder("INBOX", "inbox"), Folder("Sent", "sent"), Folder("Archive", "archive"))


class DemoConnector:
    def __init__(self, config: dict, owner: str, batch_size: int = 500):
        self.config, self.owner, self.batch_size = config, owner, batch_size

    def list_folders(self) -> list[Folder]:
        return list(FOLDERS)

    def _messages(self, folder: str):
        from app.demo.mailgen import generate

        now = datetime.fromisoformat(self.config["generated_at"])
        _, messages = generate(seed=self.config["seed"], n_messages=self.config["messages"], now=now)
        n = 0
        for m in messages:
            if m.mailbox == self.owner and m.folder == folder:
                n += 1
                yield n, m

    def fetch_changes(self, folder: Folder, cursor: dict, since: datetime) -> Iterator[Batch]:
        done = int(cursor.get("position", 0))
        records, bad, position = [], [], done
        for position, m in self._messages(folder.name):
            if position <= done:
                continue
            head, _, body = m.raw.partition(b"\r\n\r\n")
            try:
                records.append(parse_message_headers(f"demo/{position}", head + b"\r\n\r\n", m.internaldate,
                                                     body[:2048]))
            except BadDataError as exc:
                bad.append(BadRecord(f"demo/{position}", str(exc)))
            if len(records) + len(bad) >= self.batch_size:
                yield Batch(records, bad, {"position": position})
                records, bad = [], []
        yield Batch(records, bad, {"position": position}, backfill_done=True)

    def close(self) -> None:
        pass
