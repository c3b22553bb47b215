"""Reports: the numbers behind /reports, one function per report, each scoped to the caller's
organisation and, for a rep, to their own numbers.

Every report answers the same shape: its filters (start and end dates, the rep, the reps the
caller may pick) and one or more tables. A table is what one chart plots and exactly what its
table view and CSV show: `columns` (the first one, or the first two for small multiples,
label the rows; `series` names the numeric columns drawn), `rows` of plain values. The chart
(app/api/charts.py), the table and the CSV are all made from the same rows, so they cannot
disagree.

Weeks start on Monday and days are UTC days. Who may see what: admins and managers see every
rep and the whole team; a rep sees only their own numbers (asking for another rep is refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from app.db import db_time
from app.services import strength
from app.services.actor import Actor
from app.services.deals import minor_digits
from app.services.errors import Forbidden, Invalid

REPORTS = ("activity", "response-times", "new-contacts", "cold-accounts", "pipeline")
TEAM_ROLES = ("manager", "admin")  # roles that see every rep's numbers
DEFAULT_WEEKS = 12
MAX_DAYS = 2 * 366
COLD_DAYS = (60, 90)


@dataclass(frozen=True)
class Scope:
    """The validated filters of one report request."""

    org_id: int
    start: date  # first day, inclusive
    end: date  # last day, inclusive
    rep_id: int | None  # None: the whole team
    reps: list[dict] = field(default_factory=list)  # who the caller may pick: id, name, email
    team: bool = False  # the caller sees everyone's numbers

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time(), timezone.utc)

    @property
    def until(self) -> datetime:  # exclusive
        return datetime.combine(self.end + timedelta(days=1), time(), timezone.utc)

    def weeks(self) -> list[str]:
        first = self.start - timedelta(days=self.start.weekday())
        out = []
        while first <= self.end:
            out.append(first.isoformat())
            first += timedelta(days=7)
        return out


def _as_date(value, name: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise Invalid(f"{name} must be a date like 2026-01-31", field=name) from None


def scope(conn: Connection, actor: Actor, *, start=None, end=None, rep_id: int | None = None) -> Scope:
    """Check the filters and who asks. A rep gets their own numbers (rep_id defaults to them;
    another rep is Forbidden); managers and admins may pick any rep of the organisation or none."""
    role = actor.role
    if actor.user_id is not None:
        row = conn.execute(
            text("SELECT org_id, active, role FROM app_user WHERE id = :u"), {"u": actor.user_id}
        ).first()
        if row is None or row.org_id != actor.org_id or not row.active:
            raise Forbidden("this user does not belong to the organisation")
        role = row.role
    team = actor.user_id is None or role in TEAM_ROLES
    users = conn.execute(
        text("SELECT id, name, email FROM app_user WHERE org_id = :o ORDER BY lower(name), email, id"),
        {"o": actor.org_id},
    ).all()
    reps = [{"id": u.id, "name": u.name or u.email, "email": u.email} for u in users]
    if rep_id is not None and not isinstance(rep_id, int):
        raise Invalid("rep must be a user id", field="rep")
    if not team:
        if rep_id is not None and rep_id != actor.user_id:
            raise Forbidden("a rep sees only their own reports")
        rep_id = actor.user_id
        reps = [r for r in reps if r["id"] == actor.user_id]
    elif rep_id is not None and all(r["id"] != rep_id for r in reps):
        raise Invalid("no such rep in this organisation", field="rep")
    today = datetime.now(timezone.utc).date()
    end_d = _as_date(end, "end") or today
    start_d = _as_date(start, "start") or (end_d - timedelta(days=end_d.weekday()) - timedelta(weeks=DEFAULT_WEEKS - 1))
    if start_d > end_d:
        raise Invalid("start must be on or before end", field="start")
    if (end_d - start_d).days > MAX_DAYS:
        raise Invalid(f"a report covers at most {MAX_DAYS} days", field="start")
    return Scope(actor.org_id, start_d, end_d, rep_id, reps, team)


# -- SQL that differs between SQLite and PostgreSQL -----------------------------------------------


def _pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _week(conn: Connection, col: str) -> str:
    """The Monday (UTC) of a timestamp column, as YYYY-MM-DD text."""
    if _pg(conn):
        return f"to_char(date_trunc('week', {col} AT TIME ZONE 'UTC'), 'YYYY-MM-DD')"
    # SQLite keeps UTC text: 'weekday 0' goes forward to Sunday, six days back is Monday
    return f"date(substr({col}, 1, 10), 'weekday 0', '-6 days')"


def _minus_days(conn: Connection, col: str, days: int) -> str:
    if _pg(conn):
        return f"({col} - INTERVAL '{int(days)} days')"
    return f"strftime('%Y-%m-%d %H:%M:%f', {col}, '-{int(days)} days')"


def _aware(value) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _params(conn: Connection, s: Scope, **more) -> dict:
    return {"org": s.org_id, "since": db_time(conn, s.since), "until": db_time(conn, s.until), "rep": s.rep_id, **more}


def _envelope(key: str, title: str, s: Scope, tables: list[dict], notes: list[str] | None = None) -> dict:
    return {
        "report": key,
        "title": title,
        "start": s.start,
        "end": s.end,
        "rep_id": s.rep_id,
        "reps": s.reps,
        "tables": tables,
        "notes": notes or [],
    }


def _col(key: str, label: str, kind: str = "int") -> dict:
    return {"key": key, "label": label, "kind": kind}


def _table(
    key: str, title: str, chart: str, columns: list[dict], series: list[str], rows: list[list], labels=()
) -> dict:
    """series: the numeric columns drawn as bars; labels: numeric columns written beside them."""
    return {
        "key": key,
        "title": title,
        "chart": chart,
        "columns": columns,
        "series": series,
        "labels": list(labels),
        "rows": rows,
    }


def _name_of(s: Scope) -> dict[int, str]:
    return {r["id"]: r["name"] for r in s.reps}


# -- activity per rep per week ---------------------------------------------------------------------


def activity_counts(conn: Connection, s: Scope) -> dict[tuple[int, str], list[int]]:
    """(rep, Monday) -> [emails out, emails in, meetings] over the range."""
    # From the per-day summaries kept at ingest (sync/reportsums.py), folded into weeks here:
    # 20 reps x 84 days of rows instead of the range's ~480,000 participant rows, which took
    # 1.27 s for the whole team on 1,000,000 interactions (bench/reports.py, docs/performance.md 12).
    rep = "AND user_id = :rep" if s.rep_id is not None else ""
    rows = conn.execute(
        text(
            f"""SELECT user_id, day, emails_out, emails_in, meetings FROM repday
            WHERE org_id = :org AND day >= :first AND day <= :last {rep}"""
        ),
        {"org": s.org_id, "rep": s.rep_id, "first": s.start.isoformat(), "last": s.end.isoformat()},
    ).all()
    counts: dict[tuple[int, str], list[int]] = {}
    for r in rows:
        if not (r.emails_out or r.emails_in or r.meetings):
            continue
        d = date.fromisoformat(r.day)
        c = counts.setdefault((r.user_id, (d - timedelta(days=d.weekday())).isoformat()), [0, 0, 0])
        c[0] += int(r.emails_out)
        c[1] += int(r.emails_in)
        c[2] += int(r.meetings)
    return counts


def activity(conn: Connection, actor: Actor, **filters) -> dict:
    """Emails out (the rep sent them), emails in (to, cc or bcc the rep) and meetings (not
    cancelled) per rep and week. An email is counted once per rep however many copies exist."""
    s = scope(conn, actor, **filters)
    counts = activity_counts(conn, s)
    names = _name_of(s)
    reps = [s.rep_id] if s.rep_id is not None else sorted({u for u, _ in counts}, key=lambda u: (names.get(u, ""), u))
    out = []
    for uid in reps:
        for wk in s.weeks():
            out.append([names.get(uid, f"user {uid}"), wk, *counts.get((uid, wk), [0, 0, 0])])
    table = _table(
        "activity",
        "Activity per rep per week",
        "multiples",
        [
            _col("rep", "Rep", "text"),
            _col("week", "Week of", "date"),
            _col("emails_out", "Emails out"),
            _col("emails_in", "Emails in"),
            _col("meetings", "Meetings"),
        ],
        ["emails_out", "emails_in", "meetings"],
        out,
    )
    return _envelope("activity", "Activity", s, [table], ["Weeks start on Monday (UTC)."])


# -- response times --------------------------------------------------------------------------------


def nearest_rank(n: int, pct: int) -> int:
    """The 1-based rank of the pct-th percentile of n values (nearest rank), in integers: a
    float pct / 100 * n is 9.000000000000002 for the 90th of 10 and would pick the 10th."""
    return max(1, (pct * n + 99) // 100)


def figures_of(samples: list[float]) -> tuple[int, float, float]:
    """(count, median, 90th percentile) of a non-empty list."""
    ordered = sorted(samples)
    n = len(ordered)
    return n, ordered[nearest_rank(n, 50) - 1], ordered[nearest_rank(n, 90) - 1]


Figures = dict[tuple[int, str], tuple[int, float, float]]


def _user_addresses(conn: Connection, org_id: int) -> dict[str, int]:
    rows = conn.execute(
        text(
            "SELECT lower(email), id FROM app_user WHERE org_id = :o "
            "UNION ALL SELECT lower(address), user_id FROM useralias WHERE org_id = :o"
        ),
        {"o": org_id},
    ).all()
    return {a: u for a, u in rows}


def answer_figures(conn: Connection, s: Scope) -> Figures:
    """(rep, 'rep' | 'customer') -> (answers, median seconds, 90th percentile seconds) over every
    answered turn whose question and answer both fall in the range. A turn is a run of emails
    in one direction of a thread; the answer time is from the first email of a turn to the
    first email of the next turn, so a reminder sent before any answer does not reset the
    clock. Automated mail (auto-replies) is left out. The rep of an answer is its sender; of a
    customer's answer, the sender of the turn it answers (by their address or an alias).

    The turns are walked over each thread as its mail arrives and kept (sync/reportsums.py:
    answersample): walking the range's ~373,000 emails at every render took 3.3 s for the whole
    team on 1,000,000 interactions. Here, one count per address and side, then each percentile
    is the k-th row of an index kept in (address, side, seconds) order, read in place. Measured
    on that data set at load average 9 (docs/performance.md, section 12): fetching the range's
    88,000 samples into Python took 1.5 s, one window-function sort of them in SQL 0.75-1.5 s,
    this 0.22-0.32 s."""
    users = _user_addresses(conn, s.org_id)
    rng = "org_id = :org AND answered_at >= :since AND answered_at < :until AND asked_at >= :since"
    params = _params(conn, s)
    mine = sorted(a for a, u in users.items() if u == s.rep_id) if s.rep_id is not None else []
    if s.rep_id is not None and not mine:
        return {}
    counts = text(
        f"SELECT sender, direction, COUNT(*) AS n FROM answersample WHERE {rng}"
        + (" AND sender IN :mine" if mine else "")
        + " GROUP BY sender, direction"
    )
    if mine:
        counts = counts.bindparams(bindparam("mine", expanding=True))
    groups: dict[tuple[int, str], tuple[int, list[str]]] = {}
    for r in conn.execute(counts, {**params, "mine": mine} if mine else params):
        user = users.get(r.sender or "")
        if user is None:
            continue
        n, addresses = groups.get((user, r.direction), (0, []))
        groups[(user, r.direction)] = (n + int(r.n), [*addresses, r.sender])
    pick = text(
        f"SELECT seconds FROM answersample WHERE {rng} AND sender IN :addresses AND direction = :direction "
        "ORDER BY seconds LIMIT 1 OFFSET :skip"
    ).bindparams(bindparam("addresses", expanding=True))
    out: Figures = {}
    for (user, direction), (n, addresses) in sorted(groups.items()):
        at = {
            pct: float(
                conn.execute(
                    pick,
                    {**params, "addresses": addresses, "direction": direction, "skip": nearest_rank(n, pct) - 1},
                ).scalar_one()
            )
            for pct in (50, 90)
        }
        out[(user, "rep" if direction == "out" else "customer")] = (n, at[50], at[90])
    return out


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 1)


def response_times(conn: Connection, actor: Actor, **filters) -> dict:
    """Median and 90th percentile of the time a rep takes to answer a customer, and a customer
    to answer the rep, per rep (hours)."""
    s = scope(conn, actor, **filters)
    figures = answer_figures(conn, s)
    names = _name_of(s)
    reps = sorted({rep for rep, _ in figures}, key=lambda u: (names.get(u, ""), u)) if s.rep_id is None else [s.rep_id]
    rows = []
    for uid in reps:
        row: list = [names.get(uid, f"user {uid}")]
        for who in ("rep", "customer"):
            f = figures.get((uid, who))
            row += [f[0], _hours(f[1]), _hours(f[2])] if f else [0, None, None]
        rows.append(row)
    table = _table(
        "response_times",
        "Time to answer (hours)",
        "hbars",
        [
            _col("rep", "Rep", "text"),
            _col("rep_answers", "Rep answers"),
            _col("rep_median_h", "Rep median (h)", "number"),
            _col("rep_p90_h", "Rep p90 (h)", "number"),
            _col("customer_answers", "Customer answers"),
            _col("customer_median_h", "Customer median (h)", "number"),
            _col("customer_p90_h", "Customer p90 (h)", "number"),
        ],
        ["rep_median_h", "rep_p90_h", "customer_median_h", "customer_p90_h"],
        rows,
        ["rep_answers", "customer_answers"],
    )
    return _envelope(
        "response-times",
        "Response time",
        s,
        [table],
        ["An answer is the next email in the other direction in the same thread; both must fall in the range."],
    )


# -- new contacts and companies --------------------------------------------------------------------

SOURCES = ("email", "meeting", "manual", "other")


def new_contact_counts(conn: Connection, s: Scope) -> dict[str, dict[tuple[str, str], int]]:
    """ "contacts" and "companies" -> (Monday, source) -> how many are new in that week from that
    source (a company with its first contact, from that contact's source)."""

    def first_at(c: str, cs: str) -> str:
        return (
            f"CASE WHEN {cs}.first_email_at IS NOT NULL AND {cs}.first_email_at < {c}.created_at "
            f"THEN {cs}.first_email_at ELSE {c}.created_at END"
        )

    def mine(c: str) -> str:
        if s.rep_id is None:
            return ""
        return (
            f"AND ({c}.owner_id = :rep OR EXISTS (SELECT 1 FROM contactcolleague cc "
            f"WHERE cc.contact_id = {c}.id AND cc.user_id = :rep))"
        )

    # Read from the range, not from every contact: a contact's first time is the earlier of its
    # creation and its first email, so one that is new in the range was created or first emailed
    # in it, and the two indexes of migration 0022 find those. Whether it is its company's first
    # is then one look at the company's other contacts (ix_contact_company_id) for an earlier one;
    # the look names no org_id (a company's contacts are all in its organisation), or SQLite seeks
    # ix_contact_org_created on the org and reads every contact for each candidate: 70-90 s on the
    # bench with every contact created in the range (a first import), against 0.37-0.8 s before.
    # Counted by week and source here, not in Python: with 21,000 contacts new in the range,
    # fetching their rows took 200-450 ms of a 270-530 ms render at load 4-5 (the SQL alone: 66 ms).
    # Manual contacts are those a person added (contact.create in the audit log).
    # Kept times would need upkeep on every path that creates, merges, erases or re-files a
    # contact or its mail; the indexes are kept by the database. Joining all 100,000 contacts
    # and numbering them per company took 302-411 ms quiet, 621-690 ms at load 6, on 1,000,000
    # interactions (bench/reports.py, docs/performance.md section 12).
    rows = conn.execute(
        text(
            f"""WITH ids AS (
              SELECT id FROM contact WHERE org_id = :org AND created_at >= :since AND created_at < :until
              UNION SELECT contact_id FROM contactstats
              WHERE org_id = :org AND first_email_at >= :since AND first_email_at < :until
            ),
            f AS (
              SELECT c.id, c.company_id, {first_at("c", "cs")} AS first_at,
                cs.first_email_at IS NOT NULL AS emailed, COALESCE(cs.meetings, 0) AS meetings
              FROM ids JOIN contact c ON c.id = ids.id LEFT JOIN contactstats cs ON cs.contact_id = c.id
              WHERE c.org_id = :org {mine("c")}
            ),
            m AS (SELECT target FROM auditevent WHERE org_id = :org AND action = 'contact.create')
            SELECT wk, src, COUNT(*) AS contacts, SUM(n) AS companies FROM (
            SELECT {_week(conn, "f.first_at")} AS wk,
              CASE WHEN EXISTS (SELECT 1 FROM m WHERE m.target = 'contact:' || f.id) THEN 'manual'
                WHEN f.emailed THEN 'email' WHEN f.meetings > 0 THEN 'meeting' ELSE 'other' END AS src,
              CASE WHEN f.company_id IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM contact o LEFT JOIN contactstats os ON os.contact_id = o.id
                WHERE o.company_id = f.company_id AND o.id <> f.id {mine("o")}
                  AND ({first_at("o", "os")} < f.first_at OR ({first_at("o", "os")} = f.first_at AND o.id < f.id))
              ) THEN 1 ELSE 0 END AS n
            FROM f WHERE f.first_at >= :since AND f.first_at < :until
            ) g GROUP BY wk, src"""
        ),
        _params(conn, s),
    ).all()
    out: dict[str, dict[tuple[str, str], int]] = {"contacts": {}, "companies": {}}
    for r in rows:
        out["contacts"][(r.wk, r.src)] = int(r.contacts)
        if r.companies:
            out["companies"][(r.wk, r.src)] = int(r.companies)
    return out


def new_contacts(conn: Connection, actor: Actor, **filters) -> dict:
    """New contacts and companies per week by source. A contact is new in the week of its first
    email (or, with none, the week it was added); its source is "manual" when a person added it,
    else "email" or "meeting" by what brought it in. A company is new with its first contact,
    from that contact's source. For one rep: the contacts they own or exchanged mail with."""
    s = scope(conn, actor, **filters)
    counts = new_contact_counts(conn, s)
    weeks = s.weeks()
    tables = []
    for key, title in (("contacts", "New contacts per week"), ("companies", "New companies per week")):
        rows = [[wk, *(counts[key].get((wk, src), 0) for src in SOURCES)] for wk in weeks]
        tables.append(
            _table(
                key,
                title,
                "stacked",
                [_col("week", "Week of", "date"), *(_col(src, src.capitalize()) for src in SOURCES)],
                list(SOURCES),
                rows,
            )
        )
    return _envelope("new-contacts", "New contacts and companies", s, tables, ["Weeks start on Monday (UTC)."])


# -- accounts going cold ---------------------------------------------------------------------------

COLD_SORTS = ("strength", "quiet", "name")


def quiet_companies(conn: Connection, s: Scope, cutoff: datetime) -> list:
    """The companies whose last activity before the range's end (not a cancelled meeting) is from
    the range's start to before cutoff, one row per
    (company_id, last_at, name, domain, kind, direction) with n: the distinct emails and meetings
    of that kind and direction in the strength window before last_at."""
    rep = (
        "AND k.id IN (SELECT c.company_id FROM contactcolleague cc JOIN contact c ON c.id = cc.contact_id "
        "WHERE cc.org_id = :org AND cc.user_id = :rep AND c.company_id IS NOT NULL)"
        if s.rep_id is not None
        else ""
    )
    window = _minus_days(conn, "l.last_at", strength.WINDOW_DAYS)
    # Each company's last activity up to the range's end (what came after does not warm it on that
    # day; a cancelled meeting never took place) is read from the end of its run of
    # ix_participant_company_time, one index seek per company (10,000 on the bench) instead of grouping all 2.3 M participant
    # rows by company: 155-228 ms quiet, 326-452 ms at load 6 on 1,000,000 interactions
    # (bench/reports.py, docs/performance.md section 12). Nothing to keep at ingest.
    return conn.execute(
        text(
            f"""WITH l AS (
              SELECT company_id, last_at FROM (
                SELECT k.id AS company_id,
                  (SELECT p.occurred_at FROM participant p JOIN interaction i ON i.id = p.interaction_id
                   WHERE p.org_id = :org AND p.company_id = k.id AND p.occurred_at < :until
                     AND (i.kind <> 'meeting' OR COALESCE(i.status, '') <> 'cancelled')
                   ORDER BY p.occurred_at DESC LIMIT 1) AS last_at
                FROM company k WHERE k.org_id = :org {rep}
              ) m WHERE last_at < :cutoff AND last_at >= :since
            )
            SELECT l.company_id, l.last_at, k.name, k.domain, i.kind, i.direction, COUNT(DISTINCT i.id) AS n
            FROM l JOIN company k ON k.id = l.company_id
            LEFT JOIN participant p ON p.org_id = :org AND p.company_id = l.company_id AND p.occurred_at >= {window}
              AND p.occurred_at <= l.last_at
            LEFT JOIN interaction i ON i.id = p.interaction_id AND i.kind IN ('email', 'meeting')
            GROUP BY l.company_id, l.last_at, k.name, k.domain, i.kind, i.direction"""
        ),
        _params(conn, s, cutoff=db_time(conn, cutoff)),
    ).all()


def cold_accounts(conn: Connection, actor: Actor, *, sort: str = "strength", limit: int = 25, **filters) -> dict:
    """Companies with past activity (an email, meeting, note or task) and none in the 60 days up
    to the range's end, strongest relationship first. Strength is the one of
    app/services/strength.py as it stood at the last interaction (a relationship that went quiet
    scores nothing today); the range's start (default: a year before its end) drops companies
    quiet since before it. For one rep:
    companies whose people the rep exchanged mail with."""
    if sort not in COLD_SORTS:
        raise Invalid(f"sort must be one of {', '.join(COLD_SORTS)}", field="sort")
    if not isinstance(limit, int) or not 1 <= limit <= 500:
        raise Invalid("limit must be between 1 and 500", field="limit")
    if filters.get("start") is None:  # a company quiet for a year is the coldest of all: look back a year
        end = _as_date(filters.get("end"), "end") or datetime.now(timezone.utc).date()
        filters = {**filters, "start": end - timedelta(days=365)}
    s = scope(conn, actor, **filters)
    as_of = s.until
    cutoff = as_of - timedelta(days=COLD_DAYS[0])
    rows = quiet_companies(conn, s, cutoff)
    acc: dict[int, dict] = {}
    for r in rows:
        a = acc.setdefault(
            r.company_id, {"name": r.name, "domain": r.domain, "last": _aware(r.last_at), "n": [0, 0, 0]}
        )
        if r.kind == "meeting":
            a["n"][2] += r.n
        elif r.kind == "email":
            a["n"][0 if r.direction == "in" else 1] += r.n
    items = []
    for cid, a in acc.items():
        quiet = (as_of - a["last"]).days
        sc = strength.score(a["n"][0], a["n"][1], a["n"][2], a["last"], a["last"])
        items.append(
            {
                "id": cid,
                "name": a["name"],
                "domain": a["domain"],
                "last": a["last"].date().isoformat(),
                "quiet": quiet,
                "bucket": f"{COLD_DAYS[1]}+ days"
                if quiet >= COLD_DAYS[1]
                else f"{COLD_DAYS[0]}-{COLD_DAYS[1] - 1} days",
                "score": sc["score"],
                "why": sc["explanation"],
            }
        )
    keys = {
        "strength": lambda c: (-c["score"], c["name"].lower(), c["id"]),
        "quiet": lambda c: (-c["quiet"], c["name"].lower(), c["id"]),
        "name": lambda c: (c["name"].lower(), c["id"]),
    }
    items.sort(key=keys[sort])
    over90 = sum(1 for c in items if c["quiet"] >= COLD_DAYS[1])
    shown = items[:limit]
    table = _table(
        "cold_accounts",
        "Accounts going cold",
        "hbars",
        [
            _col("company", "Company", "text"),
            _col("domain", "Domain", "text"),
            _col("last_activity", "Last activity", "date"),
            _col("days_quiet", "Days quiet"),
            _col("quiet_for", "Quiet for", "text"),
            _col("strength", "Strength"),
            _col("strength_why", "Strength at the last interaction", "text"),
        ],
        ["strength"],
        [[c["name"], c["domain"], c["last"], c["quiet"], c["bucket"], c["score"], c["why"]] for c in shown],
        ["days_quiet"],
    )
    notes = [
        f"{len(items)} companies quiet for {COLD_DAYS[0]} days or more on {s.end.isoformat()} "
        f"({over90} for {COLD_DAYS[1]} or more); {len(shown)} shown."
    ]
    return _envelope("cold-accounts", "Accounts going cold", s, [table], notes)


# -- pipeline --------------------------------------------------------------------------------------


def _major(amount_minor: int | float, currency: str) -> float:
    digits = minor_digits(currency)
    return round(amount_minor / 10**digits, digits)


def _month(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def pipeline(
    conn: Connection, actor: Actor, *, pipeline_id: int | None = None, currency: str | None = None, **filters
) -> dict:
    """Open value by stage (now), win rate and average days to close of the deals closed in the
    range, and the forecast: open deals by expected close month, from the range's start to six
    months after its end, weighted by their stage's probability. One currency at a time (the
    most used one unless asked). For one rep: the deals they own."""
    s = scope(conn, actor, **filters)
    pipes = conn.execute(
        text("SELECT id, name FROM pipeline WHERE org_id = :o ORDER BY position, id"), {"o": s.org_id}
    ).all()
    if pipeline_id is not None and all(p.id != pipeline_id for p in pipes):
        raise Invalid("no such pipeline in this organisation", field="pipeline")
    pid = pipeline_id if pipeline_id is not None else (pipes[0].id if pipes else None)
    rep = "AND d.owner_id = :rep" if s.rep_id is not None else ""
    deals = conn.execute(
        text(
            f"""SELECT d.id, d.amount_minor, d.currency, d.close_date, d.opened_at, d.closed_at,
                  s.id AS stage_id, s.kind, s.probability
                FROM deal d JOIN pipelinestage s ON s.id = d.stage_id
                WHERE d.org_id = :org AND d.pipeline_id = :pid {rep}"""
        ),
        _params(conn, s, pid=pid),
    ).all()
    used: dict[str, int] = {}
    for d in deals:
        used[d.currency] = used.get(d.currency, 0) + 1
    if currency is not None:
        currency = str(currency).strip().upper()
        if len(currency) != 3 or not currency.isalpha():
            raise Invalid("currency must be a three-letter ISO 4217 code", field="currency")
    cur = currency or (max(sorted(used), key=lambda c: used[c]) if used else "EUR")
    deals = [d for d in deals if d.currency == cur]
    stages = conn.execute(
        text("SELECT id, name, kind, probability FROM pipelinestage WHERE pipeline_id = :p ORDER BY position, id"),
        {"p": pid},
    ).all()

    open_by: dict[int, list[int]] = {}
    won = lost = 0
    close_days: list[float] = []
    months = []
    m = date(s.start.year, s.start.month, 1)
    last = s.end + timedelta(days=183)
    while m <= last:
        months.append(_month(m))
        m = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
    forecast: dict[str, list[float]] = {mo: [0, 0, 0.0] for mo in months}
    for d in deals:
        if d.kind == "open":
            open_by.setdefault(d.stage_id, []).append(d.amount_minor)
            close = (
                d.close_date
                if isinstance(d.close_date, date) or d.close_date is None
                else date.fromisoformat(d.close_date)
            )
            if close is not None and _month(close) in forecast:
                f = forecast[_month(close)]
                f[0] += 1
                f[1] += d.amount_minor
                f[2] += d.amount_minor * d.probability / 100
            continue
        closed = _aware(d.closed_at)
        if closed is None or not s.since <= closed < s.until:
            continue
        if d.kind == "won":
            won += 1
            close_days.append((closed - _aware(d.opened_at)).total_seconds() / 86400)
        else:
            lost += 1
    stage_rows = [
        [st.name, st.probability, len(open_by.get(st.id, [])), _major(sum(open_by.get(st.id, [])), cur)]
        for st in stages
        if st.kind == "open"
    ]
    forecast_rows = [[mo, int(f[0]), _major(f[1], cur), _major(round(f[2]), cur)] for mo, f in forecast.items()]
    summary_rows = [
        ["Win rate (%)", round(100 * won / (won + lost), 1) if won + lost else None],
        ["Deals won", won],
        ["Deals lost", lost],
        ["Average days to close (won)", round(sum(close_days) / len(close_days), 1) if close_days else None],
    ]
    tables = [
        _table(
            "summary",
            "Closed in the range",
            "figures",
            [_col("measure", "Measure", "text"), _col("value", "Value", "number")],
            ["value"],
            summary_rows,
        ),
        _table(
            "stages",
            f"Open value by stage ({cur})",
            "hbars",
            [
                _col("stage", "Stage", "text"),
                _col("probability", "Probability (%)"),
                _col("deals", "Open deals"),
                _col("value", f"Value ({cur})", "number"),
            ],
            ["value"],
            stage_rows,
            ["deals", "probability"],
        ),
        _table(
            "forecast",
            f"Forecast by expected close month ({cur})",
            "bars",
            [
                _col("month", "Month", "text"),
                _col("deals", "Deals"),
                _col("value", f"Value ({cur})", "number"),
                _col("weighted", f"Weighted ({cur})", "number"),
            ],
            ["value", "weighted"],
            forecast_rows,
            ["deals"],
        ),
    ]
    notes = []
    if not pipes:
        notes.append("No pipeline yet: create one on the console's Deals page.")
    else:
        notes.append("Pipeline: " + next(p.name for p in pipes if p.id == pid) + ".")
    others = sorted(c for c in used if c != cur)
    if others:
        notes.append("Other currencies in this pipeline: " + ", ".join(others) + " (pick one with currency=).")
    out = _envelope("pipeline", "Pipeline", s, tables, notes)
    out["pipelines"] = [{"id": p.id, "name": p.name} for p in pipes]
    out["pipeline_id"] = pid
    out["currency"] = cur
    return out


def cell_text(value) -> str:
    """A value as the CSV, the table and the chart's data attributes all write it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    return str(value)


def run(conn: Connection, actor: Actor, name: str, **filters) -> dict:
    """One report by its name (the API's and the CLI's way in)."""
    fn = {
        "activity": activity,
        "response-times": response_times,
        "new-contacts": new_contacts,
        "cold-accounts": cold_accounts,
        "pipeline": pipeline,
    }.get(name)
    if fn is None:
        raise Invalid(f"report must be one of {', '.join(REPORTS)}", field="report")
    return fn(conn, actor, **filters)
