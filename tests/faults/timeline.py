"""One comparison for every fault test: the whole timeline an import writes, by
natural keys (surrogate ids differ between two runs), and an assertion that
names the first rows that differ and the seed that reproduces the run."""

from __future__ import annotations

TABLES = {
    "interactions": (
        "SELECT message_key, kind, direction, subject, snippet, thread_key, from_address, occurred_at, "
        "ends_at, location, status, sequence, automated, unverified_sender FROM interaction WHERE org_id = :org"
    ),
    "participants": (
        "SELECT i.message_key, p.address, p.name, p.role, p.response, u.email, c.primary_email, co.domain, "
        "p.occurred_at FROM participant p JOIN interaction i ON i.id = p.interaction_id "
        "LEFT JOIN app_user u ON u.id = p.user_id LEFT JOIN contact c ON c.id = p.contact_id "
        "LEFT JOIN company co ON co.id = p.company_id WHERE p.org_id = :org"
    ),
    "copies": (
        "SELECT i.message_key, s.mailbox_id, f.name, s.remote_id, s.provider_id, s.provider_thread "
        "FROM interactionsource s "
        "JOIN interaction i ON i.id = s.interaction_id JOIN folderstate f ON f.id = s.folder_id "
        "WHERE s.org_id = :org"
    ),
    "contacts": (
        "SELECT a.address, c.name, c.primary_email, co.domain FROM contactaddress a "
        "JOIN contact c ON c.id = a.contact_id LEFT JOIN company co ON co.id = c.company_id WHERE a.org_id = :org"
    ),
    "contacts without address": (
        "SELECT c.primary_email, c.name FROM contact c WHERE c.org_id = :org AND NOT EXISTS "
        "(SELECT 1 FROM contactaddress a WHERE a.contact_id = c.id)"
    ),
    # What signatures filled in (sync/enrichment.py), and where each value came from.
    "contact details": (
        "SELECT primary_email, search_name, title, phone, mobile, website, company_name, provenance "
        "FROM contact WHERE org_id = :org"
    ),
    "companies": "SELECT domain, name, provenance FROM company WHERE org_id = :org",
    "contactstats": (
        "SELECT c.primary_email, s.emails_in, s.emails_out, s.meetings, s.first_email_at, s.last_email_at "
        "FROM contactstats s JOIN contact c ON c.id = s.contact_id WHERE c.org_id = :org"
    ),
    "contactcolleague": (
        "SELECT c.primary_email, u.email, k.interactions, k.last_at FROM contactcolleague k "
        "JOIN contact c ON c.id = k.contact_id JOIN app_user u ON u.id = k.user_id WHERE c.org_id = :org"
    ),
    "contactcolleagueday": (
        "SELECT c.primary_email, k.day, u.email, k.emails_in, k.emails_out, k.meetings, k.last_at "
        "FROM contactcolleagueday k JOIN contact c ON c.id = k.contact_id JOIN app_user u ON u.id = k.user_id "
        "WHERE c.org_id = :org"
    ),
    "meetings": (
        "SELECT message_key, occurred_at, ends_at, location, status, sequence FROM interaction "
        "WHERE org_id = :org AND kind = 'meeting'"
    ),
    "meeting series": "SELECT series_key, sequence, since, until, listed FROM meetingseries WHERE org_id = :org",
    # The follow-up queue, as it stands once the scheduler's sweep has run (timeline() runs it).
    # Wall-clock columns (updated_at, closed_at) are left out.
    "follow-ups": (
        "SELECT f.thread_key, f.kind, u.email, i.message_key, c.primary_email, co.domain, f.address, f.since, "
        "f.due_at, f.status, f.closed_reason, f.snoozed_until FROM followup f "
        "LEFT JOIN app_user u ON u.id = f.user_id LEFT JOIN interaction i ON i.id = f.interaction_id "
        "LEFT JOIN contact c ON c.id = f.contact_id LEFT JOIN company co ON co.id = f.company_id "
        "WHERE f.org_id = :org"
    ),
    # The reports' summaries (sync/reportsums.py), kept at ingest.
    "rep days": (
        "SELECT u.email, r.day, r.emails_out, r.emails_in, r.meetings FROM repday r "
        "JOIN app_user u ON u.id = r.user_id WHERE r.org_id = :org"
    ),
    "answer samples": (
        "SELECT thread_key, asked_at, answered_at, seconds, direction, sender FROM answersample WHERE org_id = :org"
    ),
    # What the console shows about the import: the counters must not drift with retries either.
    "mailboxes": "SELECT id, status, sync_stage, messages_imported, skipped, last_error FROM mailbox WHERE org_id = :org",
    "folders": (
        "SELECT f.mailbox_id, f.name, f.messages, f.skipped, f.status, f.backfill_done, f.removed, f.cursor "
        "FROM folderstate f "
        "JOIN mailbox m ON m.id = f.mailbox_id WHERE m.org_id = :org"
    ),
    "unreadable": "SELECT mailbox_id, folder, remote_id, reason FROM syncissue WHERE org_id = :org",
    "skipped_items": "SELECT mailbox_id, folder, remote_id, reason FROM skippeditem WHERE org_id = :org",
}


# JSON keys that hold surrogate ids or wall-clock times, which differ between two runs: a
# provenance's interaction or contact, a cursor's "counted at". A folder's cursor is compared by what the
# console shows from it (the server's count, for reconciliation), not by the server's own state.
_RUN_KEYS = {"interaction_id", "contact_id", "counted_at"}
_CURSOR_KEYS = {"server_count"}


def _canonical(value, keep: set[str] | None = None):
    """JSON columns come back as dicts (PostgreSQL) or text (SQLite): compare them as sorted items."""
    if isinstance(value, str) and value.startswith("{"):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, dict):
        return tuple(
            sorted(
                (k, _canonical(v)) for k, v in value.items() if v and k not in _RUN_KEYS and (keep is None or k in keep)
            )
        )
    return value


def _row(table: str, row) -> tuple:
    values = [_canonical(v) for v in row]
    if table == "folders":  # its last column is the cursor: only what reconciliation shows of it
        values[-1] = _canonical(row[-1], _CURSOR_KEYS)
    return tuple(values)


def timeline(world, skip: tuple[str, ...] = ()) -> dict[str, list[tuple]]:
    """Every table an import writes for the world's organisation, rows sorted, once the follow-up
    sweep a worker runs every few minutes has run (an interrupted import ends its last run
    without the one a whole run ends with)."""
    from sync.engine import settle_followups

    settle_followups(world.rt.engine, world.org_id)
    out = {}
    for name, sql in TABLES.items():
        if name in skip:
            continue
        rows = world.sql(sql, org=world.org_id)
        out[name] = sorted((_row(name, row) for row in rows), key=repr)
    return out


def assert_same_timeline(got: dict, expected: dict, *, seed=None, what: str = "") -> None:
    """Row for row; the message names the table, the first differing rows and the seed."""
    problems = []
    for table in expected:
        want, have = expected[table], got.get(table)
        if have == want:
            continue
        have_set, want_set = set(have or ()), set(want)
        missing = [r for r in want if r not in have_set]
        extra = [r for r in (have or ()) if r not in want_set]
        problems.append(
            f"{table}: {len(have or ())} rows, a clean run has {len(want)}; "
            f"missing {missing[:3]}, extra {extra[:3]}" + ("" if missing or extra else "; same rows, other counts")
        )
    assert not problems, f"{what} (seed {seed}) differs from a clean run:\n" + "\n".join(problems)
