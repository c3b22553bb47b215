"""What a person does about a failed sync: the one table of fix texts.

A connector's error says what happened; its kind (connectors.base.ErrorKind)
and, where the connector knows more than the kind, its fix code
(connectors.base.Fix) are values. The words for people are here, keyed by that
code or kind and by the source (the mailbox's kind), so the engine's last_error,
the console's "How to fix", the API and the CLI all say the same thing, and
connectors never name a command of the CLI.
"""

from __future__ import annotations

from enum import StrEnum

from connectors.base import ErrorKind, Fix


class RunError(StrEnum):
    """What a run can end with besides a connector's ErrorKind (Mailbox.last_error_kind holds either)."""

    FOLDER = "folder"  # the run went on; some folders failed
    LEASE = "lease"  # another worker took the mailbox over
    INTERNAL = "internal"  # an unexpected exception: a fault in Threadline
    DATABASE = "database"  # the database itself in trouble: disk full, read-only, unreachable (app/dberrors.py)


class Attention(StrEnum):
    """What makes a mailbox need attention although its runs succeed (app/services/reconcile.py)."""

    UNRECONCILED = "unreconciled"  # messages on the server neither stored nor skipped
    SUMMARIES = "summaries"  # kept per-contact summaries disagree with a recount


ANY = "*"  # any source
_PASSWORD = (
    "check the username and password, then store the right one: `threadline mailbox set-password ID` "
    "(console: the mailbox page, New password)"
)
_SIGN_IN = (
    "sign in again to reconnect the mailbox: run `threadline mailbox add-m365 --owner REP --client-id APP` "
    "(add --imap for an IMAP mailbox)"
)

# connectors.googleauth.SCOPES (fixes import only connectors.base)
_GOOGLE_SCOPES = "https://www.googleapis.com/auth/gmail.imap_admin,https://www.googleapis.com/auth/calendar.readonly"

# (fix code or error kind, source) -> what to do. A fix code wins over the kind;
# a source's own line over ANY.
TEXTS: dict[tuple[str, str], str] = {
    (Fix.PASSWORD, ANY): _PASSWORD,
    (Fix.SIGN_IN, ANY): _SIGN_IN,
    (Fix.APP_CREDENTIAL, ANY): "check the tenant app's client secret or certificate and its admin consent, then "
    "add the tenant again with the current credential: `threadline mailbox "
    "add-m365-tenant --tenant-id ... --client-id ...`",
    (Fix.CONSENT, ANY): "grant the app Mail.Read and Calendars.Read with admin consent, then reconnect the mailbox",
    (Fix.ACCESS_POLICY, ANY): "add this mailbox to the group the policy allows (New-ApplicationAccessPolicy / "
    "Test-ApplicationAccessPolicy in Exchange Online PowerShell), or remove the mailbox "
    "from Threadline",
    (Fix.NO_MAILBOX, ANY): "check the rep's address and licence, then reconnect the mailbox",
    (Fix.IMAP_SIGN_IN, ANY): "check that IMAP is enabled for the mailbox, then reconnect it: run `threadline mailbox "
    "add-m365 --imap ...` again",
    (Fix.DELEGATION, ANY): "reconnect Google Workspace: a super admin authorises the service account's client id "
    "for domain-wide delegation (Google Admin console, Security > Access and data control > API controls > Manage "
    f"Domain Wide Delegation) with the scopes {_GOOGLE_SCOPES}; then Sync now (to test first: `threadline mailbox "
    "test-google-workspace --user REP`)",
    (Fix.SERVICE_KEY, ANY): "create a new JSON key for the service account (Google Cloud console, IAM & Admin > "
    "Service accounts > Keys), then store it: `threadline mailbox add-google-workspace --key FILE`",
    (Fix.NO_MAILBOX, "gmail"): "check that the rep's address is a user (not an alias or a group) of the Google "
    "Workspace domain and is not suspended, then Sync now",
    (Fix.GMAIL_IMAP, ANY): "turn IMAP on for the rep (Google Admin console, Apps > Google Workspace > Gmail > "
    "End User Access, POP and IMAP access), then Sync now",
    (Fix.GOOGLE_SIGN_IN, ANY): "reconnect the mailbox: the rep signs in to Google again, "
    "`threadline mailbox add-google --owner REP --client-id CLIENT_ID` (console: Add a mailbox > Google, "
    "Sign in as the rep); the folders and what was imported are kept. If it keeps expiring after a week, "
    "publish the app's OAuth consent screen (Google Cloud console, Google Auth platform > Audience): grants "
    "of an app in Testing expire after 7 days",
    (ErrorKind.AUTH, ANY): _PASSWORD,
    (ErrorKind.AUTH, "m365"): "reconnect the account: `threadline mailbox add-m365` for a rep's own sign-in, "
    "`threadline mailbox add-m365-tenant` for a tenant app",
    (ErrorKind.AUTH, "gmail"): "reconnect Google Workspace: `threadline mailbox add-google-workspace --key FILE` "
    "with the service account's current key",
    (ErrorKind.TRANSIENT, ANY): "Threadline retries automatically; if it persists, check the server name, port and "
    "security setting, and that the server is up",
    (ErrorKind.TRANSIENT, "m365"): "Threadline retries automatically; if it persists, check that Microsoft 365 is "
    "reachable from this server",
    (ErrorKind.THROTTLED, ANY): "nothing to do: the server asked Threadline to slow down; it waits and retries",
    (ErrorKind.CURSOR_EXPIRED, ANY): "re-sync the mailbox from scratch",
    (ErrorKind.BAD_DATA, ANY): "some messages could not be read; see the unreadable list on the mailbox page",
    (RunError.FOLDER, ANY): "some folders failed; see their errors on the mailbox page, then Sync now",
    (RunError.LEASE, ANY): "nothing to do: another worker was syncing this mailbox",
    (RunError.INTERNAL, ANY): "a fault in Threadline: check the server log and report it",
    (RunError.DATABASE, ANY): "the database needs its administrator (the error says what is wrong); nothing imported "
    "is lost, and the next run carries on where this one stopped",
    (Attention.UNRECONCILED, ANY): "sync the mailbox now; if the messages stay missing, re-sync it from scratch "
    "(the mailbox page, Re-sync; `threadline mailbox resync ID`), then check the unreadable list and the server log",
    (Attention.SUMMARIES, ANY): "recompute the summaries: Recompute summaries on the Sync health page, or "
    "`threadline doctor --repair`",
}


def fix_text(kind: str | None, source: str | None = None, fix: str | None = None) -> str | None:
    """The fix as a sentence (capitalised, with a full stop), or None when there is
    no error. An unknown kind gets a generic answer rather than nothing."""
    if not kind and not fix:
        return None
    for key in (fix, kind):
        if key:
            text = TEXTS.get((key, source or ANY)) or TEXTS.get((key, ANY))
            if text:
                return f"{text[0].upper()}{text[1:]}."
    return "Check the error above, then Sync now."


def explain(message: str, kind: str, source: str | None = None, fix: str | None = None) -> str:
    """An error's message followed by what fixes it, as one answer: for a refusal met while
    adding a source (the services' Invalid). A sync's error is stored without it: its kind and
    fix code are kept as values (mailbox.last_error_kind/last_error_fix) and worded by fix_text."""
    head = message.rstrip() or "unknown error"
    text = fix_text(kind, source, fix)
    if not text:
        return head
    return f"{head if head.endswith(('.', '!', '?')) else head + '.'} {text}"


def explain_error(exc, source: str | None = None) -> str:
    """explain() for a ConnectorError."""
    return explain(str(exc), exc.kind, source, exc.fix)
