"""Shared pytest fixtures: real Dovecot / Postgres servers and a fault proxy.

Fixtures
--------
dovecot              session  Dovecot, no SPECIAL-USE
dovecot_special_use  session  Dovecot with \\Sent \\Drafts \\Trash \\Junk \\Archive declared
imap_user            function fresh random user on ``dovecot`` -> ImapUser
imap_user_factory    function ``make(server=None, password=None) -> ImapUser`` (several users,
                              or users on ``dovecot_special_use``)
postgres             session  Postgres cluster (``.url``, ``.create_database()``)
postgres_url         function URL of a fresh, empty database on ``postgres``
postgres_migrated_url function URL of a fresh database on ``postgres`` at the newest schema
fault_proxy          function factory ``make(target_or_host, port=None) -> FaultProxy``
live_app             function factory ``serve(world, run_scheduler=False) -> base URL`` (uvicorn, loopback)
browser              session  headless Debian Chromium driven by Playwright
page                 function a fresh browser context + page (320x800 unless resized)
radicale             session  Radicale CalDAV server (htpasswd, plain passwords)
caldav_user          function fresh random user with an empty calendar on ``radicale`` -> CalDavUser
fake_graph_server, graph                    the Microsoft Graph fake (tests/fakes/graph/fixtures.py)
fake_google_server, google, dovecot_gmail, gmail_imap   the Google fake, a Gmail-shaped Dovecot and IMAP shim (tests/fakes/google/fixtures.py)

Missing server software makes these fixtures *fail* (not skip): a green run
must mean the integration tests really ran.
"""

from __future__ import annotations

import os
import secrets
from typing import Callable, NamedTuple

import pytest

# The fakes' fixtures, here once: imported into each test module instead, every module got a
# session fixture of its own (10 fake Graphs, 8 fake Googles, 6 Gmail-shaped Dovecots in one
# SQLite pass, each Dovecot taking 1.15 s to stop at the end, measured).
from tests.fakes.google.fixtures import dovecot_gmail, fake_google_server, gmail_imap, google  # noqa: F401
from tests.fakes.graph.fixtures import fake_graph_server, graph  # noqa: F401
from tests.servers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    AppServer,
    Dovecot,
    FaultProxy,
    Postgres,
    Radicale,
    ServerBinaryMissing,
    ServerError,
    memory_tmpdir,
)

# Maildirs on tmpfs when there is room: creating many small files on a busy
# disk is the slowest part of mailbox-heavy tests.
_IN_MEMORY = memory_tmpdir(2 << 30) is not None


class ImapUser(NamedTuple):
    """A mailbox on a test Dovecot. Unpacks as ``host, port, username, password, dovecot``."""

    host: str
    port: int
    username: str
    password: str
    dovecot: Dovecot

    def connect(self, *, login: bool = True, timeout: float = 10.0, port: int | None = None, host: str | None = None):
        """An ``imapclient.IMAPClient`` (plain TCP), logged in unless ``login=False``."""
        import imapclient

        client = imapclient.IMAPClient(host or self.host, port or self.port, ssl=False, timeout=timeout)
        if login:
            client.login(self.username, self.password)
        return client

    def deliver(self, raw: bytes, folder: str = "INBOX", internaldate=None, flags=""):
        return self.dovecot.deliver(self.username, raw, folder=folder, internaldate=internaldate, flags=flags)

    def deliver_many(self, items):
        return self.dovecot.deliver_many(self.username, items)

    def create_folder(self, name: str, **kw):
        return self.dovecot.create_folder(self.username, name, **kw)

    def delete_folder(self, name: str):
        return self.dovecot.delete_folder(self.username, name)

    def recreate_folder(self, name: str, **kw):
        return self.dovecot.recreate_folder(self.username, name, **kw)

    @property
    def maildir(self):
        return self.dovecot.maildir(self.username)


# Two tiers. A test that needs a real server (Dovecot, PostgreSQL, Radicale, Chromium, the
# Graph fake, the app on a port) or runs the CLI in subprocesses is marked `servers`:
# `./run test -m "not servers"` is the fast tier for the edit-test loop; `./run test`
# runs everything, as CI does.
SERVER_FIXTURES = frozenset(
    {
        "dovecot",
        "dovecot_special_use",
        "postgres",
        "radicale",
        "browser",
        "fake_graph_server",
        "fake_google_server",
        "dovecot_gmail",
        "live_app",
        "fault_proxy",
    }
)


# Two passes. `./run test` runs the suite on SQLite, then again with --database=postgresql,
# where each test's runtime and CLI get a database of their own on one PostgreSQL cluster
# (tests/world.py: runtime_env). The second pass leaves out what cannot differ by database:
# tests/connectors (that layer never touches the database), the servers' own tests, tests
# that pick their backend themselves (parametrised "sqlite"/"postgresql": the first pass ran
# both) and tests marked `sqlite` (about SQLite itself).
BACKENDS = ("sqlite", "postgresql")
_NOT_BY_DATABASE = ("tests/connectors/", "tests/test_layers.py", "tests/test_servers.py")


def pytest_addoption(parser):
    parser.addoption(
        "--database",
        choices=BACKENDS,
        default=os.environ.get("THREADLINE_TEST_DATABASE") or "sqlite",
        help="the database each test's runtime gets (default: sqlite, or THREADLINE_TEST_DATABASE)",
    )
    parser.addoption(
        "--shard",
        default=None,
        metavar="I/N",
        help="run part I of N of the selected tests: whole test files, balanced by their tests' weight "
        "(./run test runs the parts of both passes side by side)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite: about SQLite itself; not run again in the PostgreSQL pass")


def _picks_its_backend(item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(v in (*BACKENDS, "postgres") for v in params.values() if isinstance(v, str))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)
    if config.getoption("database") == "postgresql":
        keep, drop = [], []
        for item in items:
            path = item.nodeid.split("::", 1)[0]
            skip = path.startswith(_NOT_BY_DATABASE) or _picks_its_backend(item) or item.get_closest_marker("sqlite")
            (drop if skip else keep).append(item)
            if not skip:
                item.add_marker(pytest.mark.servers)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
    _keep_shard(config, items)


# A test that starts or uses a real server (Dovecot, PostgreSQL, Chromium...) takes several times
# as long as one that does not: the weight the parts are balanced by.
SERVER_WEIGHT = 4


def _keep_shard(config, items) -> None:
    """--shard I/N: the files go, heaviest first, to the lightest part so far (a file stays whole,
    so its module fixtures are built once); the same on every run of the same selection."""
    spec = config.getoption("shard")
    if not spec:
        return
    index, count = (int(x) for x in spec.split("/"))
    if not 1 <= index <= count:
        raise pytest.UsageError(f"--shard {spec}: I must be between 1 and N")
    weight: dict[str, int] = {}
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        weight[path] = weight.get(path, 0) + (SERVER_WEIGHT if item.get_closest_marker("servers") else 1)
    loads, mine = [0] * count, set()
    for path, w in sorted(weight.items(), key=lambda kv: (-kv[1], kv[0])):
        part = loads.index(min(loads))
        loads[part] += w
        if part == index - 1:
            mine.add(path)
    keep = [i for i in items if i.nodeid.split("::", 1)[0] in mine]
    drop = [i for i in items if i.nodeid.split("::", 1)[0] not in mine]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def _suite_database(request, tmp_path_factory):
    """In the PostgreSQL pass, start the cluster before any fixture builds a runtime; in the
    SQLite pass, name the file the migrated template goes to (made when a test first needs it)."""
    from tests import world

    os.environ.pop("THREADLINE_DATABASE_URL", None)  # a developer's own setting must not leak in
    if request.config.getoption("database") == "postgresql":
        world.use_postgres(request.getfixturevalue("postgres"))
    else:
        world.use_sqlite_template(tmp_path_factory.mktemp("sqlite-template") / "threadline.db")
    yield


@pytest.fixture(autouse=True)
def _fresh_settings():
    """The CLI reads the environment once per process (`get_settings` is cached): a test that
    runs a command in-process with its own environment must not hand its database to the next."""
    from app.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _drop_test_databases():
    """Each test's PostgreSQL databases go when it ends (those of wider fixtures stay)."""
    from tests import world

    before = set(world._databases)
    yield
    if world._postgres is not None:
        world.drop_databases_except(before)


def _start_or_fail(server, what: str):
    try:
        return server.start()
    except ServerBinaryMissing as e:
        pytest.fail(f"{what} is required for these tests but not installed: {e}", pytrace=False)
    except ServerError as e:
        pytest.fail(f"could not start {what}: {e}", pytrace=False)


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory) -> Dovecot:
    server = _start_or_fail(
        Dovecot(tmp_path_factory.mktemp("dovecot"), special_use=False, in_memory=_IN_MEMORY), "Dovecot"
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dovecot_special_use(tmp_path_factory) -> Dovecot:
    server = _start_or_fail(
        Dovecot(tmp_path_factory.mktemp("dovecot-special-use"), special_use=True, in_memory=_IN_MEMORY),
        "Dovecot (SPECIAL-USE)",
    )
    yield server
    server.stop()


@pytest.fixture
def imap_user_factory(dovecot) -> Callable[..., ImapUser]:
    created: list[tuple[Dovecot, str]] = []

    def make(server: Dovecot | None = None, password: str | None = None, username: str | None = None) -> ImapUser:
        server = server or dovecot
        username = username or f"u{secrets.token_hex(5)}"
        password = password or secrets.token_urlsafe(12)
        server.add_user(username, password)
        created.append((server, username))
        return ImapUser(server.host, server.port, username, password, server)

    yield make
    for server, username in created:
        try:
            server.remove_user(username)  # kicks its sessions, deletes the Maildir
        except Exception:  # pragma: no cover - best effort cleanup
            pass


@pytest.fixture
def imap_user(imap_user_factory) -> ImapUser:
    return imap_user_factory()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> Postgres:
    server = _start_or_fail(Postgres(tmp_path_factory.mktemp("postgres")), "PostgreSQL")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres) -> str:
    name = f"t_{secrets.token_hex(6)}"
    url = postgres.create_database(name)
    yield url
    try:
        postgres.drop_database(name)
    except Exception:  # pragma: no cover
        pass


@pytest.fixture
def postgres_migrated_url(postgres) -> str:
    """URL of a fresh database on ``postgres`` already at the newest schema: a copy of the
    session's migrated template (tests/world.py), for tests that are not about migrating."""
    from tests import world

    name = f"t_{secrets.token_hex(6)}"
    url = world.migrated_database(postgres, name)
    yield url
    try:
        postgres.drop_database(name)
    except Exception:  # pragma: no cover
        pass


@pytest.fixture
def fault_proxy() -> Callable[..., FaultProxy]:
    """Factory: ``fault_proxy(dovecot)`` / ``fault_proxy(imap_user)`` / ``fault_proxy(host, port)``."""
    proxies: list[FaultProxy] = []

    def make(target, port: int | None = None) -> FaultProxy:
        if port is None:
            host, port = target.host, target.port
        else:
            host = target
        proxy = FaultProxy(host, port).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def live_app():
    """Factory: ``serve(world, run_scheduler=False)`` starts the app for that world; returns its URL."""
    servers: list[AppServer] = []

    def serve(world, run_scheduler: bool = False) -> str:
        from app.api import create_app

        server = AppServer(create_app(world.rt, run_scheduler=run_scheduler)).start()
        servers.append(server)
        return server.url

    yield serve
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def browser():
    import os

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is required for the page tests but {CHROMIUM} is missing", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 320, "height": 800})
    pg = context.new_page()
    yield pg
    context.close()


# -- CalDAV ----------------------------------------------------------------------


class CalDavUser(NamedTuple):
    """A user with one empty calendar on the test Radicale."""

    username: str
    password: str
    calendar: str  # collection name, e.g. "calendar"
    radicale: "Radicale"

    @property
    def url(self) -> str:
        """The server root: what an admin gives `threadline calendar add-caldav --url`."""
        return self.radicale.url

    @property
    def calendar_url(self) -> str:
        return self.radicale.calendar_url(self.username, self.calendar)

    def put(self, name: str, ics, calendar: str | None = None) -> str:
        return self.radicale.put_event(self.username, self.password, calendar or self.calendar, name, ics)

    def delete(self, name: str, calendar: str | None = None) -> None:
        self.radicale.delete_event(self.username, self.password, calendar or self.calendar, name)

    def make_calendar(self, calendar: str, **kw) -> str:
        return self.radicale.make_calendar(self.username, self.password, calendar, **kw)


@pytest.fixture(scope="session")
def radicale(tmp_path_factory):
    server = _start_or_fail(Radicale(tmp_path_factory.mktemp("radicale")), "Radicale")
    yield server
    server.stop()


@pytest.fixture
def caldav_user(radicale) -> CalDavUser:
    username = f"c{secrets.token_hex(5)}"
    password = secrets.token_urlsafe(12)
    radicale.add_user(username, password)
    radicale.make_calendar(username, password, "calendar", display_name="Work")
    yield CalDavUser(username, password, "calendar", radicale)
    try:
        radicale.remove_user(username)
    except Exception:  # pragma: no cover - best effort cleanup
        pass
