"""Gmail (Google Workspace) over IMAP with SASL XOAUTH2, signed in through a
service account with domain-wide delegation, or by the rep themselves (installed-app
sign-in, a refresh token) (connectors/googleauth.py).

It is the IMAP connector (connectors/imap.py, whose cursor contract it keeps)
with two differences:
- the login is `AUTHENTICATE XOAUTH2` with an access token of the rep, never a
  password (https://developers.google.com/gmail/imap/xoauth2-protocol);
- Gmail shows each label as a folder, so one message under three labels is
  four copies (INBOX, two labels, All Mail). When the server lists a folder
  flagged \\All (RFC 6154; Gmail's "[Gmail]/All Mail"), only that folder is
  read: it holds every message once, sent mail included, and leaves out Spam
  and Trash. Every other folder is listed with role "skip", so nothing is
  fetched once per label. Where an admin hid All Mail from IMAP, every folder
  is read as on any IMAP server and the copies become extra sources of one
  interaction (keyed by Message-ID, as for every mailbox).

Gmail advertises X-GM-EXT-1, so each record also carries X-GM-MSGID and X-GM-THRID
(MessageRecord.provider_id / provider_thread: connectors/imap.py). Within the
mailbox the message id recognises a copy whatever folder or UIDVALIDITY it is read
under, and the thread id threads mail that has no References (sync/ingest.py).

The rep's Google Calendar is one more folder, "calendar:primary" (role
"calendar"), read through the Calendar API with its own token (scope
calendar.readonly) by connectors/gcal.py, whose cursor contract it follows:
as a Microsoft 365 mailbox's calendar is a folder of that mailbox.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterator

from connectors.base import AuthError, Batch, ConnectorSpec, Fix, Folder
from connectors.gcal import API_URL, GoogleCalendar, calendar_folder
from connectors.googleauth import CALENDAR_SCOPE, MAIL_SCOPE, RefreshTokenSource, ServiceAccountTokenSource
from connectors.imap import ImapConnector, ImapSettings

GMAIL_IMAP = {"host": "imap.gmail.com", "port": 993, "security": "tls"}


class GmailConnector(ImapConnector):
    calendar: GoogleCalendar | None = None
    # A rep's own sign-in (RefreshTokenSource), whose refresh token Google may rotate.
    own_sign_in: RefreshTokenSource | None = None

    @property
    def updated_secret(self) -> str | None:
        """The rotated refresh token's secret to store, when Google gave a new one."""
        return self.own_sign_in.updated_secret if self.own_sign_in is not None else None

    def connect(self):
        if self._client is None and self._oauth2_token is not None:
            # The token first: a withdrawn delegation or a rep gone from the domain is told
            # apart before any connection to Gmail is made (google-auth keeps the token for the login).
            self._oauth2_token()
        try:
            return super().connect()
        except AuthError as exc:
            if exc.fix != Fix.PASSWORD:
                raise
            # The token was just issued for this user and scope: Gmail refusing it means IMAP
            # is off for the user (Admin console, Apps > Gmail > End User Access) or the grant
            # was withdrawn since.
            raise AuthError(
                f"Gmail refused the OAuth sign-in (XOAUTH2) for {self.settings.username}", fix=Fix.GMAIL_IMAP
            ) from exc

    def list_folders(self) -> list[Folder]:
        folders = super().list_folders()
        every = [f for f in folders if "\\all" in {flag.lower() for flag in f.flags}]
        if every:
            keep = every[0].name
            folders = [f if f.name == keep or f.role == "skip" else Folder(f.name, "skip", f.flags) for f in folders]
        if self.calendar is not None:
            folders.append(calendar_folder())
        return folders

    def fetch_changes(self, folder: Folder, cursor: dict, since: datetime) -> Iterator[Batch]:
        if folder.role == "calendar" and self.calendar is not None:
            return self.calendar.fetch_changes(cursor)
        return super().fetch_changes(folder, cursor, since)

    def close(self) -> None:
        if self.calendar is not None:
            self.calendar.close()
        super().close()


def build(spec: ConnectorSpec) -> GmailConnector:
    """A Gmail connector for spec: config has the rep's address (`user`) and the IMAP
    server; the secret is the service account's JSON key, or (config mode "installed",
    a rep's own sign-in) the rep's refresh token and the Desktop client's secret."""
    cfg = spec.config
    user = cfg.get("user") or spec.owner
    own: RefreshTokenSource | None = None
    tokens: RefreshTokenSource | ServiceAccountTokenSource
    calendar_tokens: RefreshTokenSource | ServiceAccountTokenSource | None
    if cfg.get("mode") == "installed":
        # One grant covers Gmail and Calendar: one token source for both.
        own = RefreshTokenSource(spec.secret, str(cfg.get("client_id") or ""), user, token_uri=cfg.get("token_uri"))
        tokens = calendar_tokens = own
    else:
        tokens = ServiceAccountTokenSource(spec.secret, user, [MAIL_SCOPE])
        calendar_tokens = None
    settings = ImapSettings(
        host=cfg.get("host", GMAIL_IMAP["host"]),
        port=int(cfg.get("port", GMAIL_IMAP["port"])),
        security=cfg.get("security", GMAIL_IMAP["security"]),
        username=cfg.get("username") or user,
        batch_size=int(cfg.get("batch_size", 1000)),
    )
    connector = GmailConnector(settings, "", want_snippet=spec.want_snippet, oauth2_token=tokens.token)
    connector.own_sign_in = own
    connector.internal_domains = frozenset(d.lower() for d in (spec.internal or {}).get("domains", ()))
    connector.calendar_window = spec.window
    if cfg.get("calendar", True):
        if calendar_tokens is None:
            calendar_tokens = ServiceAccountTokenSource(spec.secret, user, [CALENDAR_SCOPE])
        connector.calendar = GoogleCalendar(
            calendar_tokens, api_url=cfg.get("calendar_url") or API_URL, window=spec.window
        )
    return connector
