"""Whatever bytes arrive, the pipeline (parse, then ingest) never raises: a
message is stored, skipped with a reason, or recorded as unreadable."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from app.db import write_transaction
from connectors.base import BadDataError
from connectors.mailparse import parse_message_headers
from sync.engine import org_context
from sync.ingest import MailboxContext, ingest
from tests.world import make_world

HEADER_NAMES = st.sampled_from(
    [
        "From",
        "To",
        "Cc",
        "Bcc",
        "Subject",
        "Date",
        "Message-ID",
        "References",
        "In-Reply-To",
        "List-Unsubscribe",
        "Content-Type",
        "X-Junk",
    ]
)
VALUES = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "a@cust.com",
            "Name <b@cust.co.uk>",
            "alice@ourco.com",
            "=?utf-8?q?=C3=A9?= <e@x.de>",
            "<>",
            "a@@b",
            "undisclosed-recipients:;",
            "Mon, 2 Nov 2026 10:00:00 +0100",
            "<id@x>",
            "=?bad?b?!!?=",
        ]
    ),
)
MESSAGES = st.one_of(
    st.binary(max_size=600),
    st.lists(st.tuples(HEADER_NAMES, VALUES), max_size=10).map(
        lambda fields: "".join(f"{k}: {v}\r\n" for k, v in fields).encode("utf-8", "surrogatepass") + b"\r\n"
    ),
)


def test_ingest_never_raises_on_arbitrary_input(tmp_path):
    world = make_world(tmp_path)
    with world.rt.engine.connect() as conn:
        org = org_context(conn, world.org_id, world.rt.box)
    from sqlalchemy import text

    with world.rt.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO mailbox (org_id, owner_id, kind, config, sync_stage, status, failure_count, "
                "messages_imported, skipped, created_at) VALUES (1, 1, 'imap', '{}', 'idle', 'pending', 0, 0, "
                "'{}', '2026-01-01 00:00:00.000000')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO folderstate (org_id, mailbox_id, name, role, selected, cursor, backfill_done, "
                "messages, status) VALUES (1, 1, 'INBOX', 'inbox', TRUE, '{}', FALSE, 0, 'ok')"
            )
        )
    mbx = MailboxContext(1, 1, 1, "alice@ourco.com")
    counter = iter(range(10**9))

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(MESSAGES, min_size=1, max_size=5))
    def run(raws):
        records = []
        for raw in raws:
            try:
                records.append(
                    parse_message_headers(
                        f"1/{next(counter)}", raw, datetime(2026, 1, 1, tzinfo=timezone.utc), raw[:200]
                    )
                )
            except BadDataError:
                pass
        with write_transaction(world.rt.engine) as conn:
            result = ingest(conn, org, mbx, records)
        assert result.imported + sum(result.skipped.values()) == len(records)

    run()
