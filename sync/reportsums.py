"""Report summaries, kept current as the timeline changes: what /reports reads instead of the
raw participant rows (app/services/reports.py).

RepDay: per colleague and UTC day, the emails they sent, the emails they received (to, cc or
bcc) and the meetings they were on (not cancelled), each interaction once however many copies
or rows name them. A count per (colleague, day) is a sum over interactions of what each one
gives, so any change to a set of interactions is exact as (what they give after) minus (what
they gave before): `changing()` reads the before, `changed()` the after and adds the
difference. New interactions are the case with nothing before (`changed(new_ids=...)`).

Days, not weeks: a report's week start is then free, and the range's edges (UTC days) fall on
row boundaries. Days are UTC, as every report's range is; an organisation's time zone
(organisation.timezone) is not applied: a local week would need rows per local day, recounted
whenever the zone changes.

AnswerSample: one row per answered turn of an email thread (a turn is a run of emails in one
direction; the answer time runs from the first email of a turn to the first of the next). The
samples are kept rather than a digest: medians and 90th percentiles cannot be added up, and a
histogram would round the figures the tests compute by hand. The whole team's twelve weeks
are 87,635 samples on the 1,000,000-interaction bench (bench/reports.py); the report reads no
sample it does not need, it picks each percentile as the k-th entry of an index in (address,
side, seconds) order: 0.2-0.3 s at load average 6 (0.5-0.6 s at 9), against 9-14 s walking the raw emails at each
render (docs/performance.md, section 12). A thread's samples are recomputed from its emails
whenever an email of it is added, changed or removed.

check() recounts both from the timeline; the tests compare it with the kept rows after every
kind of change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from app.db import advisory_locks, insert_values, utc_day, utc_day_sql

CHUNK = 500


def _lock_key(*parts) -> int:
    digest = hashlib.blake2b("\0".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _seconds(conn: Connection, later: str, earlier: str) -> str:
    if conn.dialect.name == "postgresql":
        return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"
    return f"(julianday({later}) - julianday({earlier})) * 86400.0"


# -- activity per colleague and day --------------------------------------------------------------


def _activity_sql(conn: Connection, where: str) -> str:
    day = utc_day_sql(conn, "p.occurred_at")
    return f"""SELECT p.user_id, {day} AS d,
      COUNT(DISTINCT CASE WHEN i.kind = 'email' AND i.direction = 'out' AND p.role = 'from' THEN i.id END),
      COUNT(DISTINCT CASE WHEN i.kind = 'email' AND i.direction = 'in' AND p.role IN ('to', 'cc', 'bcc')
            THEN i.id END),
      COUNT(DISTINCT CASE WHEN i.kind = 'meeting' AND COALESCE(i.status, '') <> 'cancelled' THEN i.id END)
    FROM participant p JOIN interaction i ON i.id = p.interaction_id
    WHERE p.org_id = :org AND p.user_id IS NOT NULL AND {where}
    GROUP BY p.user_id, {day}"""


Counts = dict[tuple[int, str], list[int]]


def _given_by(conn: Connection, org_id: int, interaction_ids: Iterable[int]) -> Counts:
    """What these interactions give to each (colleague, day) now."""
    ids = sorted({int(i) for i in interaction_ids})
    out: Counts = {}
    for n in range(0, len(ids), CHUNK):
        id_list = ", ".join(str(i) for i in ids[n : n + CHUNK])  # integers only: safe to inline
        for user_id, d, sent, got, met in conn.execute(
            text(_activity_sql(conn, f"p.interaction_id IN ({id_list})")), {"org": org_id}
        ):
            c = out.setdefault((user_id, d), [0, 0, 0])
            c[0] += sent
            c[1] += got
            c[2] += met
    return out


def given_by_new_emails(people: Iterable[tuple[int, Any, str, int | None]], direction_of) -> Counts:
    """What new emails give, from the participant rows the batch just wrote for them
    (interaction id, occurred_at as written, role, user id), without reading them back:
    the same counts as _given_by (one per interaction, colleague and day). Reading them
    back was 43 statements and 0.5 s waited on PostgreSQL in a 20,000-message import."""
    seen: dict[tuple[int, str], tuple[set, set]] = {}
    for iid, at, role, user_id in people:
        if user_id is None:
            continue
        direction = direction_of[iid]
        if direction == "out" and role == "from":
            side = 0
        elif direction == "in" and role in ("to", "cc", "bcc"):
            side = 1
        else:
            continue
        day = utc_day(at)
        seen.setdefault((user_id, day), (set(), set()))[side].add(iid)
    return {key: [len(sent), len(got), 0] for key, (sent, got) in seen.items()}


def _add(conn: Connection, org_id: int, delta: Counts) -> None:
    """Add these differences to the kept rows, in key order (two writers never wait in a cycle)."""
    rows = [(org_id, key[0], key[1], *delta[key]) for key in sorted(delta) if any(delta[key])]
    insert_values(
        conn,
        "repday",
        ("org_id", "user_id", "day", "emails_out", "emails_in", "meetings"),
        rows,
        "ON CONFLICT (org_id, user_id, day) DO UPDATE SET "
        "emails_out = repday.emails_out + excluded.emails_out, "
        "emails_in = repday.emails_in + excluded.emails_in, "
        "meetings = repday.meetings + excluded.meetings",
    )
    if any(min(c) < 0 for c in delta.values()):
        conn.execute(
            text("DELETE FROM repday WHERE org_id = :org AND emails_out = 0 AND emails_in = 0 AND meetings = 0"),
            {"org": org_id},
        )


# -- answer samples per thread -------------------------------------------------------------------


def _samples_sql(conn: Connection, where: str) -> str:
    """The answered turns of the threads `where` selects (over interaction i). Automated mail
    (auto-replies) is left out. The rep of an answer is its sender; of a customer's answer, the
    sender of the turn it answers."""
    secs = _seconds(conn, "occurred_at", "prev_at")
    return f"""SELECT thread_key, prev_at, occurred_at, {secs}, direction,
        lower(CASE WHEN direction = 'out' THEN from_address ELSE prev_from END)
      FROM (
        SELECT id, thread_key, occurred_at, direction, from_address,
          LAG(occurred_at) OVER (PARTITION BY thread_key ORDER BY occurred_at, id) AS prev_at,
          LAG(from_address) OVER (PARTITION BY thread_key ORDER BY occurred_at, id) AS prev_from
        FROM (
          SELECT i.id, i.thread_key, i.occurred_at, i.direction, i.from_address,
            LAG(i.direction) OVER (PARTITION BY i.thread_key ORDER BY i.occurred_at, i.id) AS prev_dir
          FROM interaction i
          WHERE i.org_id = :org AND i.kind = 'email' AND i.automated = :no AND {where}
        ) e WHERE prev_dir IS NULL OR prev_dir <> direction
      ) t WHERE prev_at IS NOT NULL"""


_SAMPLE_COLUMNS = "(org_id, thread_key, asked_at, answered_at, seconds, direction, sender)"


def recount_threads(conn: Connection, org_id: int, thread_keys: Iterable[str]) -> None:
    """Recompute these threads' samples from their emails. On PostgreSQL each thread is locked
    (advisory, in key order) first: two writers recounting one thread would otherwise each keep
    the samples the other inserted meanwhile."""
    keys = sorted({k for k in thread_keys if k is not None})
    if not keys:
        return
    advisory_locks(conn, sorted({(_lock_key("thread", org_id, k), True) for k in keys}))
    delete = text("DELETE FROM answersample WHERE org_id = :org AND thread_key IN :keys").bindparams(
        bindparam("keys", expanding=True)
    )
    insert = text(
        f"INSERT INTO answersample {_SAMPLE_COLUMNS} SELECT :org, s.* FROM ("
        + _samples_sql(conn, "i.thread_key IN :keys")
        + ") s"
    ).bindparams(bindparam("keys", expanding=True))
    if conn.dialect.name == "postgresql":
        # One statement: the DELETE as a data-modifying CTE of the INSERT, which reads only
        # interaction rows, so neither part needs the other's effect (a round trip a batch fewer).
        both = text(
            "WITH gone AS (DELETE FROM answersample WHERE org_id = :org AND thread_key IN :keys) "
            f"INSERT INTO answersample {_SAMPLE_COLUMNS} SELECT :org, s.* FROM ("
            + _samples_sql(conn, "i.thread_key IN :keys")
            + ") s"
        ).bindparams(bindparam("keys", expanding=True))
        for n in range(0, len(keys), CHUNK):
            conn.execute(both, {"org": org_id, "keys": keys[n : n + CHUNK], "no": False})
        return
    for n in range(0, len(keys), CHUNK):
        part = keys[n : n + CHUNK]
        conn.execute(delete, {"org": org_id, "keys": part})
        conn.execute(insert, {"org": org_id, "keys": part, "no": False})


def _threads_of(conn: Connection, org_id: int, interaction_ids: list[int]) -> set[str]:
    found: set[str] = set()
    for n in range(0, len(interaction_ids), CHUNK):
        id_list = ", ".join(str(int(i)) for i in interaction_ids[n : n + CHUNK])
        found.update(
            r[0]
            for r in conn.exec_driver_sql(
                f"SELECT DISTINCT thread_key FROM interaction WHERE org_id = {int(org_id)} "
                f"AND kind = 'email' AND id IN ({id_list})"
            )
        )
    return found


# -- the ways in ---------------------------------------------------------------------------------


@dataclass
class Change:
    """Interactions about to change (or go): what they gave before, and their threads."""

    org_id: int
    ids: list[int]
    before: Counts = field(default_factory=dict)
    threads: set[str] = field(default_factory=set)


def changing(conn: Connection, org_id: int, interaction_ids: Iterable[int]) -> Change:
    """Call before changing or deleting these interactions or their participants."""
    ids = sorted({int(i) for i in interaction_ids})
    return Change(org_id, ids, _given_by(conn, org_id, ids), _threads_of(conn, org_id, ids))


def changed(
    conn: Connection,
    org_id: int,
    changes: Iterable[Change] = (),
    new_ids: Iterable[int] = (),
    new_threads: Iterable[str] = (),
    new_given: Counts | None = None,
) -> None:
    """Call after: the rows take what the new interactions give and the difference the changed ones
    make, in one upsert; then every thread touched is recounted (one set of locks, in one order).
    new_given: what new_ids give, when the caller knows it (given_by_new_emails)."""
    delta: Counts = {}

    def plus(counts: Counts, sign: int) -> None:
        for key, c in counts.items():
            d = delta.setdefault(key, [0, 0, 0])
            for n in range(3):
                d[n] += sign * c[n]

    threads = set(new_threads)
    plus(_given_by(conn, org_id, new_ids) if new_given is None else new_given, 1)
    for ch in changes:
        plus(_given_by(conn, org_id, ch.ids), 1)
        plus(ch.before, -1)
        threads |= ch.threads | _threads_of(conn, org_id, ch.ids)
    _add(conn, org_id, delta)
    recount_threads(conn, org_id, threads)


def rebuild(conn: Connection, org_id: int) -> None:
    """Every summary of an organisation from the timeline (migration 0019, the bench's data set)."""
    conn.execute(text("DELETE FROM repday WHERE org_id = :org"), {"org": org_id})
    conn.execute(text("DELETE FROM answersample WHERE org_id = :org"), {"org": org_id})
    conn.execute(
        text(
            "INSERT INTO repday (user_id, day, emails_out, emails_in, meetings, org_id) SELECT s.*, :org FROM ("
            + _activity_sql(conn, "p.user_id IN (SELECT id FROM app_user WHERE org_id = :org)")
            + ") s"
        ),
        {"org": org_id},
    )
    conn.execute(
        text(
            f"INSERT INTO answersample {_SAMPLE_COLUMNS} SELECT :org, s.* FROM (" + _samples_sql(conn, "1 = 1") + ") s"
        ),
        {"org": org_id, "no": False},
    )


# -- the recount: do the kept rows agree with the timeline? ----------------------------------------


def _when(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def recount(conn: Connection, org_id: int) -> tuple[Counts, list[tuple]]:
    """(activity by (colleague, day), sorted samples) as the timeline gives them now."""
    org = {"org": org_id, "no": False}
    activity: Counts = {}
    for user_id, d, *c in conn.execute(
        text(_activity_sql(conn, "p.user_id IN (SELECT id FROM app_user WHERE org_id = :org)")), org
    ):
        if any(c):
            activity[(user_id, d)] = list(c)
    samples = sorted(
        (r[0], _when(r[1]), _when(r[2]), round(float(r[3]), 3), r[4], r[5])
        for r in conn.execute(text(_samples_sql(conn, "1 = 1")), org)
    )
    return activity, samples


def kept(conn: Connection, org_id: int) -> tuple[Counts, list[tuple]]:
    org = {"org": org_id}
    activity: Counts = {
        (r[0], r[1]): [r[2], r[3], r[4]]
        for r in conn.execute(
            text("SELECT user_id, day, emails_out, emails_in, meetings FROM repday WHERE org_id = :org"), org
        )
        if any(r[2:])
    }
    samples = sorted(
        (r[0], _when(r[1]), _when(r[2]), round(float(r[3]), 3), r[4], r[5])
        for r in conn.execute(
            text(
                "SELECT thread_key, asked_at, answered_at, seconds, direction, sender FROM answersample "
                "WHERE org_id = :org"
            ),
            org,
        )
    )
    return activity, samples


def check(conn: Connection, org_id: int) -> list[str]:
    """What disagrees between the kept summaries and a recount (empty: they agree)."""
    (a_now, s_now), (a_kept, s_kept) = recount(conn, org_id), kept(conn, org_id)
    wrong = [
        f"activity {k}: kept {a_kept.get(k)}, recount {a_now.get(k)}"
        for k in sorted(a_now.keys() | a_kept.keys())
        if a_now.get(k) != a_kept.get(k)
    ]
    if s_now != s_kept:
        wrong.append(
            f"answer samples: kept {len(s_kept)}, recount {len(s_now)}, first differing "
            f"{next((p for p in zip(s_kept, s_now, strict=False) if p[0] != p[1]), None)}"
        )
    return wrong
