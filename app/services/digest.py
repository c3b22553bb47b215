"""The daily digest email: the organisation's SMTP server (set by an admin), the test email,
and the scheduler's job that sends each rep who asked for it their day once per local day.

Once a day, with several workers and across restarts: before sending, a rep's row is
claimed by one conditional UPDATE (`digest_sent_on` moves to the rep's local today only if
it was before it), as `claim()` does for mailboxes; exactly one worker's UPDATE matches.
A send that fails hands the day back (the same UPDATE in reverse), so a later run tries
again; a process killed between the claim and the send loses that day's digest (at most
once, never twice: a second copy of the day is worse than none).
"""

from __future__ import annotations

import html
import logging
from datetime import date, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Connection

from app import netguard
from app.db import read_only, write_transaction
from app.models import Organisation, User
from app.models.base import utcnow
from app.services import audit, day as day_service, smtp
from app.services.actor import Actor, changing
from app.services.errors import Invalid, NotFound
from app.services.orgs import clean_address

log = logging.getLogger("threadline.digest")
O, U = Organisation.__table__, User.__table__
SMTP_FIELDS = ("host", "port", "security", "username", "from_address")
# After a failure (the server refused the login, was down), an organisation's digests are
# tried again after this long rather than at every run of the job: the error stays shown.
RETRY_AFTER = timedelta(minutes=10)
# The job runs this often; a digest goes out within this long after the rep's hour.
JOB_SECONDS = 60


# -- the SMTP server -------------------------------------------------------------------------------


def smtp_settings(conn: Connection, org_id: int) -> dict:
    """The organisation's SMTP server as shown to admins: never the password, only whether one is set."""
    row = conn.execute(
        select(O.c.smtp, O.c.smtp_secret_enc, O.c.smtp_last_error, O.c.smtp_last_error_at, O.c.smtp_last_sent_at).where(
            O.c.id == org_id
        )
    ).first()
    if row is None:
        raise NotFound(f"no organisation {org_id}")
    cfg = dict(row.smtp or {})
    return {
        "configured": bool(cfg.get("host")),
        "host": cfg.get("host"),
        "port": cfg.get("port"),
        "security": cfg.get("security"),
        "username": cfg.get("username"),
        "from_address": cfg.get("from_address"),
        "password_set": row.smtp_secret_enc is not None,
        "last_error": row.smtp_last_error,
        "last_error_at": _aware(row.smtp_last_error_at),
        "last_sent_at": _aware(row.smtp_last_sent_at),
    }


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _clean_smtp(host, port, security, username, from_address) -> dict:
    host = str(host or "").strip().lower()
    if not host or any(c.isspace() or c in "/:@" for c in host):
        raise Invalid(f"not a host name: {host!r}", field="host")
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise Invalid("the port must be a number", field="port") from None
    if not 1 <= port <= 65535:
        raise Invalid("the port must be between 1 and 65535", field="port")
    if security not in smtp.SECURITY:
        raise Invalid(f"security must be one of {', '.join(smtp.SECURITY)}", field="security")
    refused = netguard.refusal(host, port)
    if refused:
        raise Invalid(refused, field="host")
    username = str(username or "").strip() or None
    if username is not None and any(c in username for c in "\r\n"):
        raise Invalid("the user name cannot contain line breaks", field="username")
    return {
        "host": host,
        "port": port,
        "security": security,
        "username": username,
        "from_address": clean_address(str(from_address or ""), field="from_address"),
    }


def set_smtp(
    rt,
    actor: Actor,
    *,
    host: str,
    port: int,
    security: str = "starttls",
    username: str | None = None,
    password: str | None = None,
    from_address: str,
) -> dict:
    """Set the SMTP server digests go through. `password` None keeps the stored one, "" removes
    it; it is stored encrypted with the secret box and never written to the audit log.

    A kept password is kept only for the same server, security and username (another port of the
    same server keeps it). Threat: an admin (or a stolen admin session) who does not know the
    password points the settings at a server of their own and presses "send a test": the stored
    password would log in there, or cross the network in clear once security is "none". Changing
    any of those three asks for the password again."""
    cfg = _clean_smtp(host, port, security, username, from_address)
    if password is not None and any(c in password for c in "\r\n"):
        raise Invalid("the password cannot contain line breaks", field="password")
    with changing(rt.engine, actor) as conn:
        before = smtp_settings(conn, actor.org_id)
        moved = [k for k in ("host", "security", "username") if before[k] != cfg[k]]
        if password is None and before["password_set"] and cfg["username"] and moved:  # no username: no login
            raise Invalid(
                f"enter the password again: the stored one is kept only for the same server and user "
                f"({', '.join(moved)} changed)",
                field="password",
            )
        values: dict = {"smtp": cfg}
        if password is not None:
            values["smtp_secret_enc"] = rt.box.encrypt(password) if password else None
        changed = {k: {"from": before[k], "to": v} for k, v in cfg.items() if before[k] != v}
        if changed or password is not None:
            values.update(smtp_last_error=None, smtp_last_error_at=None)  # a new server: the old error is stale
            conn.execute(update(O).where(O.c.id == actor.org_id).values(**values))
            detail: dict = {"changed": changed}
            if password is not None:
                detail["password"] = "changed" if password else "removed"
            audit.record(conn, actor.org_id, actor.user_id, "smtp.update", cfg["host"], detail)
        return smtp_settings(conn, actor.org_id)


def clear_smtp(rt, actor: Actor) -> dict:
    """No SMTP server: no digest goes out (reps' choices are kept)."""
    with changing(rt.engine, actor) as conn:
        before = smtp_settings(conn, actor.org_id)
        if before["configured"] or before["password_set"]:
            conn.execute(
                update(O)
                .where(O.c.id == actor.org_id)
                .values(smtp=None, smtp_secret_enc=None, smtp_last_error=None, smtp_last_error_at=None)
            )
            audit.record(conn, actor.org_id, actor.user_id, "smtp.clear", before["host"] or "")
        return smtp_settings(conn, actor.org_id)


def _server(conn: Connection, box, org_id: int) -> smtp.SmtpServer | None:
    row = conn.execute(select(O.c.smtp, O.c.smtp_secret_enc).where(O.c.id == org_id)).first()
    cfg = dict(row.smtp or {}) if row is not None else {}
    if not cfg.get("host"):
        return None
    return smtp.SmtpServer(
        host=cfg["host"],
        port=int(cfg["port"]),
        security=cfg.get("security", "starttls"),
        username=cfg.get("username"),
        password=box.decrypt(row.smtp_secret_enc) if row.smtp_secret_enc else None,
        from_address=cfg["from_address"],
    )


def _record_outcome(conn: Connection, org_id: int, error: str | None, now: datetime) -> None:
    if error is None:
        conn.execute(update(O).where(O.c.id == org_id).values(smtp_last_error=None, smtp_last_sent_at=now))
    else:
        conn.execute(update(O).where(O.c.id == org_id).values(smtp_last_error=error, smtp_last_error_at=now))


def _steps(server: smtp.SmtpServer, failed: smtp.SmtpFailure | None) -> list[dict]:
    """Every step's outcome, as the mailbox connection test reports them: ok True, False, or
    None (not tried after an earlier failure, or not used: no TLS, no sign-in)."""
    out = []
    reached_failure = False
    for step in smtp.STEPS:
        if (step == "tls" and server.security == "none") or (step == "auth" and not server.username):
            out.append({"step": step, "ok": None, "detail": "not used"})
            continue
        if failed is not None and step == failed.step:
            out.append({"step": step, "ok": False, "detail": failed.detail})
            reached_failure = True
        elif reached_failure:
            out.append({"step": step, "ok": None, "detail": "not tried"})
        else:
            out.append({"step": step, "ok": True, "detail": "ok"})
    return out


def send_test(rt, actor: Actor, to: str | None = None, *, tls_context=None) -> dict:
    """Send a test email (to `to`, else to the admin) and say which step failed if one did:
    {"ok", "failed_step", "detail", "steps"}. The outcome is recorded like a digest's."""
    with changing(rt.engine, actor) as conn:
        server = _server(conn, rt.box, actor.org_id)
        if server is None:
            raise Invalid("no SMTP server is set yet", field="host")
        if to is None:
            to = conn.execute(select(U.c.email).where(U.c.id == actor.user_id)).scalar()
            if to is None:
                raise Invalid("give an address to send the test email to", field="to")
        org_name = conn.execute(select(O.c.name).where(O.c.id == actor.org_id)).scalar_one()
    to = clean_address(to, field="to")
    msg = EmailMessage()
    msg["Subject"] = f"Threadline test email ({org_name})"
    msg["From"] = formataddr(("Threadline", server.from_address))
    msg["To"] = to
    msg["Message-ID"] = make_msgid(domain=server.from_address.rpartition("@")[2])
    msg.set_content(
        f"This is a test email from Threadline for {org_name}: the SMTP server {server.host} works, "
        "and daily digests will be sent through it.\n"
    )
    failure: smtp.SmtpFailure | None = None
    try:
        smtp.send(server, [msg], context=tls_context)
    except smtp.SmtpFailure as exc:
        failure = exc
    now = utcnow()
    error = None if failure is None else f"test email to {to} failed at the {failure.step} step: {failure.detail}"
    with write_transaction(rt.engine) as conn:
        _record_outcome(conn, actor.org_id, error, now)
        audit.record(conn, actor.org_id, actor.user_id, "smtp.test", to, {"ok": failure is None, "error": error})
    return {
        "ok": failure is None,
        "failed_step": None if failure is None else failure.step,
        "detail": f"sent to {to}" if failure is None else error,
        "steps": _steps(server, failure),
    }


# -- the digest ----------------------------------------------------------------------------------


def _local(value: datetime | None, zone: ZoneInfo) -> str:
    return "" if value is None else value.astimezone(zone).strftime("%H:%M")


def _local_day(value: datetime | None, zone: ZoneInfo) -> str:
    return "" if value is None else value.astimezone(zone).strftime("%a %d %b")


def sections(day: dict) -> list[tuple[str, list[str]]]:
    """The day as (heading, lines) in plain text, in the order of /home. Every value is as stored
    (it may come from an email): the HTML part escapes each line, the text part needs nothing."""
    zone = ZoneInfo(day["timezone"])
    follow = [
        f"{'OVERDUE ' if f['overdue'] else ''}{f['label']}: {f['who']}"
        + (f" - {f['subject']}" if f.get("subject") else "")
        + f" (due {_local_day(f['due_at'], zone)})"
        for f in day["followups"]
    ]
    tasks = [
        f"{t['title'] or '(no title)'} - {t['who'] or ''} (due {_local_day(t['due_at'], zone)})" for t in day["tasks"]
    ]
    meetings = [
        f"{_local(m['starts_at'], zone)} {m['subject'] or '(no subject)'}"
        + (f" with {', '.join(a['name'] or a['address'] or '' for a in m['attendees'])}" if m["attendees"] else "")
        for m in day["meetings_today"]
    ]
    deals = [f"{d['name']}: {d['reason']}" for d in day["deals"]]
    return [
        ("Follow-ups due and overdue", follow),
        ("Tasks due", tasks),
        ("Today's meetings", meetings),
        ("Deals needing attention", deals),
    ]


def compose(org_name: str, rep_name: str, rep_email: str, from_address: str, day: dict, home_url: str) -> EmailMessage:
    """The digest email: a plain-text part and an HTML part with every value escaped."""
    parts = sections(day)
    nouns = (
        ("follow-up", "follow-ups"),
        ("task", "tasks"),
        ("meeting", "meetings"),
        ("deal to look at", "deals to look at"),
    )
    counts = (
        ", ".join(f"{len(lines)} {nouns[i][len(lines) != 1]}" for i, (_, lines) in enumerate(parts) if lines)
        or "nothing due"
    )
    local_today = day["now"].astimezone(ZoneInfo(day["timezone"])).strftime("%A %d %B")
    msg = EmailMessage()
    msg["Subject"] = f"Your day, {local_today}: {counts}"
    msg["From"] = formataddr((f"Threadline ({org_name})", from_address))
    msg["To"] = formataddr((" ".join(rep_name.split()), rep_email))  # no line breaks in a header
    msg["Message-ID"] = make_msgid(domain=from_address.rpartition("@")[2])
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it (and we skip it at ingest)
    text = [f"Your day, {local_today}", ""]
    for heading, lines in parts:
        text.append(f"{heading} ({len(lines)})")
        text.extend(f"  - {line}" for line in lines or ["none"])
        text.append("")
    text.append(f"Open your day: {home_url}")
    msg.set_content("\n".join(text) + "\n")
    e = html.escape
    body = [f"<h1 style='font-size:18px'>Your day, {e(local_today)}</h1>"]
    for heading, lines in parts:
        body.append(f"<h2 style='font-size:15px;margin:16px 0 4px'>{e(heading)} ({len(lines)})</h2>")
        body.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in lines) + "</ul>" if lines else "<p>None.</p>")
    body.append(f'<p><a href="{e(home_url, quote=True)}">Open your day in Threadline</a></p>')
    msg.add_alternative(
        "<!doctype html><html><body style='font-family:sans-serif'>" + "".join(body) + "</body></html>",
        subtype="html",
    )
    return msg


def _claim(conn: Connection, user_id: int, today: date) -> bool:
    """One conditional UPDATE: true for exactly one caller per rep and local day."""
    return (
        conn.execute(
            update(U)
            .where(
                U.c.id == user_id,
                U.c.digest_enabled.is_(True),
                or_(U.c.digest_sent_on.is_(None), U.c.digest_sent_on < today),
            )
            .values(digest_sent_on=today)
        ).rowcount
        == 1
    )


def _give_back(engine, user_id: int, today: date, previous: date | None) -> None:
    with write_transaction(engine) as conn:
        conn.execute(update(U).where(U.c.id == user_id, U.c.digest_sent_on == today).values(digest_sent_on=previous))


def send_due(rt, now: datetime | None = None, *, tls_context=None) -> dict:
    """The scheduler's job: every rep who chose the daily digest, whose local hour has come and
    who has not had today's, gets their day. Returns {"sent", "failed"} counts for this run."""
    now = _aware(now) or utcnow()
    sent = failed = 0
    with read_only(rt.engine) as conn:
        orgs = conn.execute(
            select(O.c.id, O.c.name, O.c.smtp_last_error, O.c.smtp_last_error_at).where(O.c.smtp.is_not(None))
        ).all()
    for org in orgs:
        if org.smtp_last_error and org.smtp_last_error_at and _aware(org.smtp_last_error_at) > now - RETRY_AFTER:
            continue
        with read_only(rt.engine) as conn:
            server = _server(conn, rt.box, org.id)
            reps = conn.execute(
                select(U.c.id, U.c.name, U.c.email, U.c.timezone, U.c.digest_hour, U.c.digest_sent_on)
                .where(U.c.org_id == org.id, U.c.active.is_(True), U.c.digest_enabled.is_(True))
                .order_by(U.c.id)
            ).all()
        if server is None:
            continue
        for rep in reps:
            local = now.astimezone(ZoneInfo(rep.timezone))
            today = local.date()
            if local.hour < rep.digest_hour or (rep.digest_sent_on is not None and rep.digest_sent_on >= today):
                continue
            with write_transaction(rt.engine) as conn:
                if not _claim(conn, rep.id, today):
                    continue  # another worker has it
            try:
                with read_only(rt.engine) as conn:
                    day = day_service.my_day(conn, org.id, rep.id, now)
                msg = compose(
                    org.name,
                    rep.name or rep.email,
                    rep.email,
                    server.from_address,
                    day,
                    rt.settings.public_url + "/home",
                )
                smtp.send(server, [msg], context=tls_context)
            except smtp.SmtpFailure as exc:
                failed += 1
                _give_back(rt.engine, rep.id, today, rep.digest_sent_on)
                error = f"the digest to {rep.email} failed at the {exc.step} step: {exc.detail}"
                log.warning("organisation %s: %s", org.id, error)
                with write_transaction(rt.engine) as conn:
                    _record_outcome(conn, org.id, error, now)
                if exc.step in ("connect", "tls", "auth", "sender"):
                    break  # the others would fail the same way: try again after RETRY_AFTER
                continue
            except Exception:
                _give_back(rt.engine, rep.id, today, rep.digest_sent_on)
                raise
            sent += 1
            with write_transaction(rt.engine) as conn:
                _record_outcome(conn, org.id, None, now)
    return {"sent": sent, "failed": failed}


def job(rt):
    """The digest job for the scheduler (registered by the composition roots: sync cannot import services)."""

    def run() -> None:
        try:
            send_due(rt)
        except Exception:  # noqa: BLE001 - the next run tries again
            log.exception("daily digest run failed")

    return ("digest", run, JOB_SECONDS)
