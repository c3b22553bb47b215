"""One comparison for every fault test: the whole timeline an import writes, by
natural keys (surrogate ids differ between two runs), and an assertion that
names the first rows that differ and the seed that reproduces the run."""

from __future__ import annotations

TABLES = {
    "interactions": (
        "SELECT message_key, kind, direction, subject, snippet, thread_key, from_address, occurred_at, "
        "ends_at, location, status, sequence FROM interaction WHERE org_id = :org"
    ),
    "participants": (
        "SELECT i.message_key, p.address, p.name, p.role, p.response, u.email, c.primary_email, co.domain, "
        "p.occurred_at FROM participant p JOIN interaction i ON i.id = p.interaction_id "
        "LEFT JOIN app_user u ON u.id = p.user_id LEFT JOIN contact c ON c.id = p.contact_id "
        "LEFT JOIN company co ON co.id = p.company_id WHERE p.org_id = :org"
    ),
    "copies": (
        "SELECT i.message_key, s.mailbox_id, f.name, s.remote_id FROM interactionsource s "
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
    "companies": "SELECT domain, name FROM company WHERE org_id = :org",
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
    # What the console shows about the import: the counters must not drift with retries either.
    "mailboxes": "SELECT id, status, sync_stage, messages_imported, skipped, last_error FROM mailbox WHERE org_id = :org",
    "folders": (
        "SELECT f.mailbox_id, f.name, f.messages, f.skipped, f.status, f.backfill_done FROM folderstate f "
        "JOIN mailbox m ON m.id = f.mailbox_id WHERE m.org_id = :org"
    ),
    "unreadable": "SELECT mailbox_id, folder, remote_id, reason FROM syncissue WHERE org_id = :org",
    "skipped_items": "SELECT mailbox_id, folder, remote_id, reason FROM skippeditem WHERE org_id = :org",
}


def _canonical(value):
    """JSON columns come back as dicts (PostgreSQL) or text (SQLite): compare them as sorted items."""
    if isinstance(value, str) and value.startswith("{"):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, dict):
        return tuple(sorted((k, v) for k, v in value.items() if v))
    return value


def timeline(world, skip: tuple[str, ...] = ()) -> dict[str, list[tuple]]:
    """Every table an import writes for the world's organisation, rows sorted."""
    out = {}
    for name, sql in TABLES.items():
        if name in skip:
            continue
        rows = world.sql(sql, org=world.org_id)
        out[name] = sorted((tuple(_canonical(v) for v in row) for row in rows), key=repr)
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
