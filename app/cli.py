"""`threadline` — the admin's command line."""

from __future__ import annotations

import getpass
import io
import json
import os
import sys
from datetime import datetime
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from app.db import read_only, session
from app.dberrors import DATABASE_ERRORS, database_trouble
from app.runtime import Runtime, freeze_startup_heap, lower_cpu_priority, open_runtime
from app.services import orgs as org_service
from app.services.actor import Actor
from app.services.errors import ServiceError, exit_code

app = typer.Typer(
    help="Threadline: reps' mailboxes become one shared contact timeline.", no_args_is_help=True, add_completion=False
)
org_app = typer.Typer(help="The organisation.", no_args_is_help=True)
user_app = typer.Typer(help="Reps and admins.", no_args_is_help=True)
mailbox_app = typer.Typer(help="Mailboxes to sync.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
# One group, two modules: cli_segments imports into it, cli_contacts finds and merges duplicates.
contacts_app = typer.Typer(help="Contacts and companies: import, duplicates and merges.", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(contacts_app, name="contacts")
app.add_typer(user_app, name="user")
app.add_typer(mailbox_app, name="mailbox")
app.add_typer(db_app, name="db")
# Everything printed is plain text: folder names, server errors, subjects and people's
# names come from servers and mail, and rich would read "[/old]" as markup (and fail)
# or ":calendar:" as an emoji. Where a style is wanted it is given as Text with a style.
PLAIN = {"markup": False, "emoji": False, "highlight": False}
# Piped or logged output must not be wrapped at rich's default 80 columns.
out = Console(**PLAIN) if sys.stdout.isatty() else Console(width=250, soft_wrap=True, **PLAIN)
err = Console(stderr=True, **PLAIN) if sys.stderr.isatty() else Console(stderr=True, width=250, soft_wrap=True, **PLAIN)
OrgOpt = Annotated[Optional[int], typer.Option("--org", help="Organisation id (needed only when there are several).")]


def _rt() -> Runtime:
    return open_runtime()


def _fail(message: str, code: int = 1) -> None:
    err.print(Text.assemble(("error:", "red"), f" {message}"))
    raise typer.Exit(code)


def _the_org(s, org: int | None):
    """The organisation the command is about (a clear error when there is none, or several)."""
    return org_service.the_org(s, org)


def _org_id(rt: Runtime, org: int | None) -> int:
    return org_service.the_org_id(rt, org)


def _operator(rt: Runtime, org: int | None) -> Actor:
    """Who a CLI command acts as: the server's operator, in the organisation it is about."""
    return Actor.operator(_org_id(rt, org))


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


# -- db -----------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration (the app also does this on start)."""
    rt = _rt()
    out.print(f"database is up to date: {rt.settings.database_url.split('@')[-1]}")


# -- org ------------------------------------------------------------------------
@org_app.command("init")
def org_init(
    name: Annotated[str, typer.Option("--name", help="Company name.")],
    domain: Annotated[list[str], typer.Option("--domain", help="An internal email domain (repeatable).")],
    another: Annotated[
        bool,
        typer.Option(
            "--another",
            help="Create a second organisation in this database on purpose (every command then needs --org).",
        ),
    ] = False,
) -> None:
    """Create the organisation with its internal email domains."""
    rt = _rt()
    org = org_service.create_org(rt, name, domain, another=another)
    out.print(
        f"organisation {org['id']} created: {org['name']} ({', '.join(org['internal_domains'])})", highlight=False
    )


# -- users ----------------------------------------------------------------------
@user_app.command("add")
def user_add(
    email: str,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    admin: Annotated[bool, typer.Option("--admin", help="Give the admin role.")] = False,
    alias: Annotated[
        list[str] | None, typer.Option("--alias", help="Another address of this user (repeatable).")
    ] = None,
    org: OrgOpt = None,
) -> None:
    """Add a rep (or an admin with --admin)."""
    rt = _rt()
    user = org_service.create_user(
        rt, _operator(rt, org), email, name=name, role="admin" if admin else "rep", aliases=alias or []
    )
    out.print(f"user {user['id']} added: {user['email']} ({user['role']})", highlight=False)


@user_app.command("token")
def user_token(
    email: str, name: Annotated[str, typer.Option(help="What the token is for.")] = "cli", org: OrgOpt = None
) -> None:
    """Issue a personal access token for the API and the sidebar (shown once)."""
    rt = _rt()
    actor = _operator(rt, org)
    with read_only(rt.engine) as conn:
        user_id = org_service.user_id_by_email(conn, actor.org_id, email)
    out.print(org_service.create_token(rt, actor, user_id, name)["token"], highlight=False)


# -- mailboxes ------------------------------------------------------------------
@mailbox_app.command("add-imap")
def mailbox_add_imap(
    owner: Annotated[str, typer.Option(help="The rep whose mailbox this is.")],
    email: Annotated[Optional[str], typer.Option(help="The mailbox's address (default: the owner's).")] = None,
    host: Annotated[
        Optional[str],
        typer.Option(
            help="IMAP server host name (default: found from the address: "
            "DNS SRV records, the provider's autoconfig, its MX, known "
            "providers)."
        ),
    ] = None,
    username: Annotated[Optional[str], typer.Option(help="IMAP login name (default: the address).")] = None,
    port: Annotated[int, typer.Option(help="IMAP port (with --host).")] = 993,
    security: Annotated[str, typer.Option(help="tls | starttls | none (with --host)")] = "tls",
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Connect and log in first; nothing is saved if that fails.")
    ] = True,
    org: OrgOpt = None,
) -> None:
    """Add an IMAP mailbox from its address and password (the server is found and tested), or
    from --host etc. The password comes from THREADLINE_IMAP_PASSWORD or a prompt, never argv."""
    from app.services import mailboxes

    password = _password(f"IMAP password for {username or email or owner}: ")
    rt = _rt()
    mb = mailboxes.connect_imap(
        rt,
        _operator(rt, org),
        owner=owner,
        email=email,
        password=password,
        host=host,
        port=port,
        security=security,
        username=username,
        check=check,
    )
    found = mb["found"]
    if found:
        out.print(
            f"found {found['host']}:{found['port']} ({found['security']}) in {found['source']}; "
            f"logged in as {found['username']}",
            highlight=False,
            markup=False,
        )
        if found["note"]:
            out.print(found["note"], highlight=False, markup=False)
    elif not check:
        out.print("not tested (--no-check): the first sync will tell", highlight=False)
    out.print(
        f"mailbox {mb['id']} added for {owner}; run `threadline sync --once --mailbox {mb['id']}`",
        highlight=False,
        markup=False,
    )


def _password(prompt: str, env: str = "THREADLINE_IMAP_PASSWORD", hint: str = "") -> str:
    """A secret from the environment variable env, else a prompt; never from argv."""
    password = os.environ.get(env)
    if password is None:
        if not sys.stdin.isatty():
            _fail(f"set {env} or run in a terminal to be prompted{hint}")
        password = getpass.getpass(prompt)
    return password


@mailbox_app.command("set-password")
def mailbox_set_password(mailbox_id: int, org: OrgOpt = None) -> None:
    """Replace a mailbox's password (THREADLINE_IMAP_PASSWORD or a prompt) and sync it again soon."""
    from app.services import mailboxes

    password = _password(f"new IMAP password for mailbox {mailbox_id}: ")
    rt = _rt()
    mailboxes.set_password(rt, _operator(rt, org), mailbox_id, password)
    out.print(f"password of mailbox {mailbox_id} replaced; it will be synced at the next tick")


@mailbox_app.command("list")
def mailbox_list(
    org: OrgOpt = None, as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False
) -> None:
    """Every mailbox with its status, stage and last error."""
    from sqlmodel import select

    from app.models import Mailbox
    from app.services import mailboxes

    rt = _rt()
    with session(rt.engine) as s:
        o = _the_org(s, org)
        rows = [
            mailboxes.describe(s, m)
            for m in s.exec(select(Mailbox).where(Mailbox.org_id == o.id).order_by(Mailbox.id)).all()
        ]
    if as_json:
        out.print_json(json.dumps(rows, default=_json_default))
        return
    if not rows:
        out.print("no mailbox yet: add one with `threadline mailbox add-imap --owner REP`", highlight=False)
    for block in mailbox_blocks(rows):
        out.print(block)


def mailbox_blocks(rows: list[dict]) -> list:
    """One block per mailbox: a heading line, then label/value lines whose values wrap under
    themselves, so the owner, the error and its fix stay whole on a narrow terminal."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.text import Text

    blocks = []
    for r in rows:
        where = r["server"] or r.get("username") or ""
        heading = Text(
            f"#{r['id']} {r['kind']} · {r['owner'] or 'no owner'} · {r['status']}"
            + (" · syncing now" if r["stage"] == "running" else ""),
            style="bold",
        )
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        if where:
            grid.add_row("server", Text(where + (f" as {r['username']}" if r["server"] and r.get("username") else "")))
        last = r["last_success_at"].strftime("%Y-%m-%d %H:%M") if r["last_success_at"] else "never"
        grid.add_row(
            "synced",
            Text(f"{r['messages_imported']:,} imported, {sum(r['skipped'].values()):,} skipped; last success {last}"),
        )
        if r["last_error"]:
            grid.add_row("error", Text(r["last_error"]))
        if r.get("attention"):
            grid.add_row("attention", Text(f"needs attention: {r['attention']}"))
        if r.get("fix"):
            grid.add_row("fix", Text(r["fix"]))
        blocks.append(Group(heading, Padding(grid, (0, 0, 0, 3), expand=False), Text("")))
    return blocks


# -- sync -----------------------------------------------------------------------
@app.command("sync")
def sync_cmd(
    once: Annotated[bool, typer.Option("--once", help="Sync every due mailbox once and exit.")] = False,
    mailbox: Annotated[Optional[int], typer.Option("--mailbox", help="Only this mailbox.")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Take a mailbox over even while another worker holds it (that worker is stopped "
            "at its next batch). A holder killed on this host is taken over without it.",
        ),
    ] = False,
) -> None:
    """Sync mailboxes now (a progress bar on a terminal, a summary at the end).
    Exits 1 if any mailbox failed or could not be synced because another worker holds it."""
    from sqlmodel import select

    from app.models import Mailbox, MailboxStatus
    from app.services.mailboxes import fix_for
    from sync.engine import lease_holder, settle_followups, sync_mailbox

    if not once:
        _fail("use `threadline sync --once` here, or `threadline worker` to keep syncing")
    rt = _rt()
    freeze_startup_heap()
    with session(rt.engine) as s:
        query = select(Mailbox.id, Mailbox.kind, Mailbox.org_id).where(Mailbox.status != MailboxStatus.PAUSED)
        if mailbox is not None:
            query = select(Mailbox.id, Mailbox.kind, Mailbox.org_id).where(Mailbox.id == mailbox)
        rows = s.exec(query.order_by(Mailbox.id)).all()
        kinds = {mid: kind for mid, kind, _ in rows}
        org_ids = sorted({org_id for _, _, org_id in rows})
        ids = list(kinds)
    if mailbox is not None and not ids:
        _fail(f"no mailbox {mailbox}")
    failed = 0
    for mid in ids:
        report = _run_with_progress(rt, mid, sync_mailbox, force=force)
        if report is None:
            holder, until = lease_holder(rt.engine, mid)
            held = f" ({holder}, lease until {until:%H:%M:%S} UTC)" if holder and until else ""
            out.print(
                f"mailbox {mid}: NOT synced, another worker is syncing it{held}; "
                "if that worker is gone, run again with --force",
                highlight=False,
            )
            failed += 1
            continue
        rate = report.imported / report.seconds if report.seconds else 0
        line = (
            f"mailbox {mid}: {'ok' if report.ok else 'FAILED'} — {report.imported} copies imported "
            f"({report.new_interactions} new interactions), {report.skipped} skipped, {report.bad} unreadable, "
            f"{report.seconds:.1f}s ({rate:,.0f} msg/s)"
        )
        if report.folders_failed:
            line += f"; folders failed: {'; '.join(report.folders_failed)}"
        if report.error:
            line += f"; error: {report.error}"
            todo = fix_for(report.error_kind, kinds.get(mid), report.error_fix)
            if todo:
                line += f" Fix: {todo}"
            failed += 1
        out.print(line, highlight=False)
    # No scheduler runs here: the follow-up sweep a worker runs every few minutes, once. A run that
    # imported ends with it already, but an import killed after its last batch left it undone.
    for org_id in org_ids:
        settle_followups(rt.engine, org_id)
    raise typer.Exit(1 if failed else 0)


def _run_with_progress(rt: Runtime, mailbox_id: int, sync_mailbox, force: bool = False):
    kwargs = dict(worker=rt.settings.worker_id, lease_seconds=rt.settings.sync_lease_seconds, force=force)
    if not out.is_terminal:
        return sync_mailbox(rt.engine, rt.box, mailbox_id, **kwargs)
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (
        SpinnerColumn(),
        TextColumn("mailbox {task.fields[mid]}: {task.completed:,.0f} imported", markup=False),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=True) as bar:
        task = bar.add_task("sync", total=None, mid=mailbox_id)
        return sync_mailbox(
            rt.engine, rt.box, mailbox_id, progress=lambda r: bar.update(task, completed=r.imported), **kwargs
        )


@app.command("timeline")
def timeline_cmd(
    email: str,
    limit: Annotated[int, typer.Option(help="How many interactions.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    org: OrgOpt = None,
) -> None:
    """Show what the company knows about one person."""
    from app.services.timeline import lookup

    rt = _rt()
    with session(rt.engine) as s:
        o = _the_org(s, org)
    with read_only(rt.engine) as conn:
        data = lookup(conn, o.id, email, limit)
    if data is None:
        _fail(f"no contact with the address {email}", code=2)
    if as_json:
        out.print_json(json.dumps(data, default=_json_default))
        return
    from app.textsafe import shown  # names and subjects come from mail: no bidirectional tricks on the terminal

    c, sm = data["contact"], data["summary"]
    out.print(
        Text.assemble(
            (shown(c["name"] or c["email"]), "bold"),
            shown(
                f" <{c['email']}>" + (f" — {c['company']['name']} ({c['company']['domain']})" if c["company"] else "")
            ),
        )
    )
    out.print(
        f"emails in {sm['emails_in']}, out {sm['emails_out']}, meetings {sm['meetings']}; "
        f"first {sm['first_interaction_at']:%Y-%m-%d}, last {sm['last_interaction_at']:%Y-%m-%d}"
        if sm["first_interaction_at"]
        else "no interactions yet",
        highlight=False,
    )
    if sm["colleagues"]:
        out.print(
            shown(
                "known by: " + ", ".join(f"{k['name'] or k['email']} ({k['interactions']})" for k in sm["colleagues"])
            ),
            highlight=False,
        )
    for m in data["upcoming"]:
        out.print(
            shown(
                f"upcoming: {m['occurred_at']:%Y-%m-%d %H:%M} {m['subject'] or '(no title)'}"
                + (f" — {m['location']}" if m.get("location") else "")
            ),
            highlight=False,
        )
    table = Table("when", "dir", "subject", "colleagues")
    for item in data["timeline"]["items"]:
        table.add_row(
            f"{item['occurred_at']:%Y-%m-%d %H:%M}",
            item["direction"] + (" (unverified sender)" if item.get("unverified_sender") else ""),
            shown(item["subject"] or ""),
            shown(", ".join(k["name"] or k["address"] for k in item["colleagues"]))
            + (
                f" (and {item['recipients_not_kept']:,} recipients not listed)"
                if item.get("recipients_not_kept")
                else ""
            ),
        )
    out.print(table)


# -- processes ------------------------------------------------------------------
@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Load a generated demo company first (kept in <data dir>/demo, apart from your own data)."
        ),
    ] = False,
    scheduler: Annotated[bool, typer.Option(help="Run the sync scheduler in this process.")] = True,
    https: Annotated[
        bool,
        typer.Option(
            "--https",
            help="Serve HTTPS with a self-signed certificate for "
            "localhost (made in the data dir on first use), for trying the "
            "Outlook add-in locally.",
        ),
    ] = False,
) -> None:
    """Run the web app (API, sidebar, admin) and, by default, the sync scheduler."""
    import uvicorn

    from app.api import create_app
    from app.settings import demo_settings, get_settings

    _log_to_stderr()
    # The port first: a demo takes half a minute to seed, and must not print a token and
    # "running" and then die because another process holds the port.
    sock = _listen(host, port)
    settings = demo_settings(get_settings()) if demo else get_settings()
    rt = open_runtime(settings)
    info = None
    if demo:
        from app.services.demo import seed_demo

        out.print(
            f"demo data in {settings.data_dir} (your own set-up uses {settings.data_dir.parent}, never this)",
            highlight=False,
        )
        info = seed_demo(rt, out)
    api = create_app(rt, run_scheduler=scheduler)
    tls = {}
    scheme = "http"
    if https:
        cert, key = _local_certificate(rt.settings.data_dir, host)
        tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        scheme = "https"
        out.print(
            f"HTTPS with the self-signed certificate {cert} (trust it once in your OS or browser); the Outlook "
            f"add-in manifest is at {scheme}://localhost:{port}/addin/manifest.xml when "
            f"THREADLINE_PUBLIC_URL={scheme}://localhost:{port}",
            highlight=False,
        )
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else ("[::1]" if host == "::" else host)
    out.print(_running_banner(f"{scheme}://{shown}:{port}", info), highlight=False, markup=False)
    server = uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_level="warning", **tls))
    server.run(sockets=[sock])


def _log_to_stderr() -> None:
    """The long-running commands say what happens to mailboxes (a push connection lost, a sync
    failing) on stderr, with the time: nothing was configured, so those lines were dropped."""
    import logging

    logger = logging.getLogger("threadline")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _listen(host: str, port: int):
    """The listening socket, taken before anything else; a clear error when the port is busy."""
    import errno
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            _fail(
                f"port {port} on {host} is already in use (another Threadline, or another program): stop it, "
                f"or choose another port with --port {port + 1}"
            )
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    return sock


def _running_banner(base: str, demo: dict | None) -> str:
    """Where to go now. For the demo: links that sign in with this start's token (in the
    URL's fragment, which the browser never sends to the server or writes to its logs)."""
    if demo is None:
        return (
            f"Threadline is running:\n  admin console  {base}/admin\n  sidebar        {base}/panel\n"
            f"  pipeline board {base}/board\n"
            f"  API            {base}/docs\nCtrl-C stops it."
        )
    token = demo["token"]
    customer = f"?email={demo['customer']}" if demo.get("customer") else ""
    return (
        f"Threadline demo is running ({demo['org']}):\n"
        f"  admin console  {base}/admin/login#token={token}\n"
        f"                 (signs you in as {demo['admin']})\n"
        f"  sidebar        {base}/panel{customer}#token={token}\n"
        f"  pipeline board {base}/board#token={token}\n"
        f"  API            {base}/docs, with the header Authorization: Bearer {token}\n"
        "This start's token replaces the earlier demo tokens. Ctrl-C stops the demo; to set up your own "
        'team, see README.md "Setting it up for your team" (your data stays apart from the demo\'s).'
    )


def _local_certificate(data_dir, host: str):
    """A self-signed certificate for localhost (and the listen address), created once in the data dir."""
    import ipaddress
    from datetime import timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    folder = data_dir / "tls"
    cert_path, key_path = folder / "localhost.crt", folder / "localhost.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        ip = ipaddress.ip_address(host)
        if str(ip) not in ("127.0.0.1", "0.0.0.0", "::"):
            names.append(x509.IPAddress(ip))
    except ValueError:
        if host and host != "localhost":
            names.append(x509.DNSName(host))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Threadline local"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Threadline (self-signed)"),
        ]
    )
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


@app.command("worker")
def worker_cmd() -> None:
    """Run only the sync scheduler (for deployments that split web and sync)."""
    from app.services.jobs import scheduled_jobs
    from sync.scheduler import run_forever

    _log_to_stderr()
    rt = _rt()
    nice = lower_cpu_priority(rt.settings.worker_nice)
    freeze_startup_heap()
    out.print(f"worker {rt.settings.worker_id} syncing due mailboxes at nice {nice}; Ctrl-C to stop")
    run_forever(rt, jobs=scheduled_jobs(rt))


# Commands for the other sources and for administration live in their own modules.
from app import (  # noqa: E402,F401 - they register on `app`
    cli_admin,
    cli_calendar,
    cli_contacts,
    cli_deals,
    cli_followups,
    cli_google,
    cli_m365,
    cli_reports,
    cli_segments,
)


def _whole_writes() -> None:
    """Standard output and error that never drop part of a write.

    Under `python -u` or PYTHONUNBUFFERED=1 (container images commonly set it) their binary
    layer is a raw stream, and the text layer does not look at how much of a write one system
    call took: a stop signal (Ctrl-Z on `threadline segment export ... | gzip`, a profiler
    attaching) cuts a large write to a full pipe short, and the rest was lost (measured: 2% of
    a 90 MB output under SIGSTOP/SIGCONT every few milliseconds; none through a buffered
    layer, which writes the rest). Buffered and flushed at every line, output stays as prompt."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(getattr(stream, "buffer", None), io.RawIOBase):
            continue  # buffered already, or not a real stream (a test's capture)
        setattr(
            sys,
            name,
            open(  # noqa: SIM115 - lives as long as the process, like the stream it replaces
                stream.fileno(),
                "w",
                buffering=1,  # text, flushed at every line
                encoding=stream.encoding,
                errors=stream.errors,
                closefd=False,
            ),
        )


def main() -> None:
    """Run a command; a use case's refusal (app/services/errors.py) is printed as one line
    and becomes the exit code of its kind, the CLI's one mapping of the error vocabulary."""
    _whole_writes()
    try:
        app()
    except ServiceError as exc:
        err.print("error: ", style="red", end="")
        err.print(exc.reason, markup=False, highlight=False, emoji=False)
        raise SystemExit(exit_code(exc)) from None
    except DATABASE_ERRORS as exc:
        trouble = database_trouble(exc)  # the database's own trouble, in words (app/dberrors.py)
        if trouble is None:
            raise
        err.print("error: ", style="red", end="")
        err.print(trouble, markup=False, highlight=False, emoji=False)
        raise SystemExit(1) from None


if __name__ == "__main__":
    # Run as `python -m app.cli`, this file is __main__; the command modules
    # register on the importable `app.cli`, so that is the one to run.
    from app.cli import main as _main

    _main()
