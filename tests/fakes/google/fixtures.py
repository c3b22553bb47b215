"""pytest fixtures for the fake Google, for every test (tests/conftest.py imports them once:
imported into a test module, they would start servers of its own for that module)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.fakes.google.imapshim import GmailShim, GmailStore
from tests.fakes.google.server import FakeGoogle
from tests.servers import Dovecot, ServerBinaryMissing, ServerError


@pytest.fixture(scope="session")
def fake_google_server():
    server = FakeGoogle().start()
    yield server
    server.stop()


@pytest.fixture
def google(fake_google_server):
    """The fake, emptied before and after the test."""
    fake_google_server.reset()
    yield fake_google_server
    fake_google_server.reset()


def oauth2_dovecot_config(fake: FakeGoogle) -> str:
    """Dovecot settings that accept XOAUTH2 with the fake's tokens: the oauth2 passdb
    with Dovecot's own example for Google (tokeninfo_url, username_attribute = email)."""
    folder = Path(tempfile.mkdtemp(prefix="dovecot-oauth2-"))
    folder.chmod(0o755)  # the auth process runs as the mail user
    conf = folder / "oauth2.conf.ext"
    conf.write_text(f"tokeninfo_url = {fake.tokeninfo_url}\nusername_attribute = email\n")
    conf.chmod(0o644)
    return f"""\
auth_mechanisms = plain login xoauth2 oauthbearer
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {conf}
}}
"""


@pytest.fixture(scope="session")
def dovecot_gmail(fake_google_server, tmp_path_factory):
    """A Dovecot shaped like Gmail's IMAP: SPECIAL-USE folders (All Mail flagged \\All,
    created at first login) and XOAUTH2 against the fake Google's tokeninfo."""
    server = Dovecot(
        tmp_path_factory.mktemp("dovecot-gmail"),
        special_use=True,
        autocreate_special_use=True,
        extra_config=oauth2_dovecot_config(fake_google_server),
    )
    try:
        server.start()
    except (ServerBinaryMissing, ServerError) as exc:
        pytest.fail(f"could not start Dovecot with the oauth2 passdb: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def gmail_imap(dovecot_gmail):
    """Gmail's IMAP with its extensions (X-GM-EXT-1: X-GM-MSGID, X-GM-THRID, X-GM-LABELS) in
    front of `dovecot_gmail`: connect to its host and port; `gmail_imap.store.deliver(...)`
    puts a rep's message under its labels (imapshim.py)."""
    shim = GmailShim(dovecot_gmail.host, dovecot_gmail.port, GmailStore(dovecot_gmail))
    yield shim
    shim.stop()
