"""A connector over the generated demo corpus, so `serve --demo` exercises the
real engine (claims, batches, cursors, ingest) without any mail server."""

from __future__ import annotations

import hashlib
import itertools
from datetime import datetime, timedelta
from typing import Iterator

from connectors.base import Attendee, BadDataError, BadRecord, Batch, Folder, MeetingRecord
from connectors.mailparse import has_received, parse_message_headers

CALENDAR = Folder("calendar:Demo", "calendar")
FOLDERS = (Folder("INBOX", "inbox"), Folder("Sent", "sent"), Folder("Archive", "archive"), CALENDAR)
MEETING_EVERY = 12  # one external thread in twelve led to a meeting
# Of the threads of the last ten days, one in three has a call booked in the coming week, so a
# small demo (the tests seed 600 messages) still shows upcoming meetings whatever the day: at one
# in twelve, 600 messages gave between 0 and 5 of them depending on the hour they were generated.
UPCOMING_EVERY = 3


class DemoConnector:
    def __init__(self, config: dict, owner: str, batch_size: int = 500):
        self.config, self.owner, self.batch_size = config, owner, batch_size

    def list_folders(self) -> list[Folder]:
        return list(FOLDERS)

    def _messages(self, folder: str, *, scenes: bool = True):
        """The owner's copies in a folder, numbered; then the follow-up scenes (demodata/scenes.py)."""
        from demodata import generate
        from demodata.scenes import followup_scenes

        now = datetime.fromisoformat(self.config["generated_at"])
        corpus, messages = generate(seed=self.config["seed"], n_messages=self.config["messages"], now=now)
        n = 0
        for m in itertools.chain(messages, followup_scenes(corpus, now) if scenes else ()):
            if m.mailbox == self.owner and m.folder == folder:
                n += 1
                yield n, m

    def _meetings(self) -> Iterator[MeetingRecord]:
        """Meetings that follow some of the rep's customer threads: a call two
        days after the first mail, and for the latest threads one next week, so
        the demo shows past and upcoming meetings. Derived from the mail, so
        every rep on a thread gets the same meeting (one interaction)."""
        now = datetime.fromisoformat(self.config["generated_at"])
        # Not the scenes: a meeting with those customers would close their follow-ups.
        for _, m in (pair for f in ("INBOX", "Sent", "Archive") for pair in self._messages(f, scenes=False)):
            if m.kind != "external" or m.in_reply_to:
                continue
            digest = hashlib.sha256(m.message_id.encode()).hexdigest()
            fresh = now - m.internaldate < timedelta(days=10)
            if int(digest[:8], 16) % (UPCOMING_EVERY if fresh else MEETING_EVERY):
                continue
            head = parse_message_headers("demo", m.raw.partition(b"\r\n\r\n")[0] + b"\r\n\r\n", m.internaldate)
            people = [Attendee(a, n) for n, a in head.from_ + head.to + head.cc]
            # A recent thread's call is booked 1 to 7 days after the demo was generated (so it is
            # upcoming), an older one's two days after its first mail (so it is past).
            when = now + timedelta(days=1 + int(digest[9], 16) % 7) if fresh else m.internaldate + timedelta(days=2)
            day = when.replace(hour=9 + int(digest[8], 16) % 8, minute=0, second=0, microsecond=0)
            yield MeetingRecord(
                remote_id=f"demo-meeting/{digest[:16]}",
                uid=f"{digest[:24]}@demo.threadline",
                recurrence_id=None,
                start=day,
                end=day + timedelta(minutes=30),
                subject=f"Call: {head.subject.removeprefix('Re: ')}",
                organizer=people[0] if people else None,
                attendees=people[1:],
                location="Video call",
            )

    def fetch_changes(self, folder: Folder, cursor: dict, since: datetime) -> Iterator[Batch]:
        if folder == CALENDAR:
            if not cursor.get("done"):
                meetings = list(self._meetings())
                yield Batch(meetings, [], {"done": True, "server_count": len(meetings)}, backfill_done=True)
            return
        done = int(cursor.get("position", 0))
        records, bad, position = [], [], done
        for position, m in self._messages(folder.name):
            if position <= done:
                continue
            head, _, body = m.raw.partition(b"\r\n\r\n")
            try:
                records.append(
                    parse_message_headers(
                        f"demo/{position}",
                        head + b"\r\n\r\n",
                        m.internaldate,
                        body[:4096],
                        relayed=has_received(head),
                        truncated=len(body) > 4096,
                    )
                )
            except BadDataError as exc:
                bad.append(BadRecord(f"demo/{position}", str(exc)))
            if len(records) + len(bad) >= self.batch_size:
                yield Batch(records, bad, {"position": position})
                records, bad = [], []
        # every message of the folder was numbered on the way: the last number is its count
        yield Batch(records, bad, {"position": position, "server_count": position}, backfill_done=True)

    def close(self) -> None:
        pass
