"""Properties of the demo email corpus generator (demodata/)."""

from __future__ import annotations

import email
import email.policy
import email.utils
import mailbox
import re
import subprocess
import sys
import time
import tracemalloc
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from itertools import islice
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import demodata  # noqa: E402
from demodata import Corpus, Message, generate, malformed_messages, write_maildir  # noqa: E402

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=timezone.utc)
N = 1500
DAYS = 365
MSGID_RE = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")
POLICY = email.policy.default


@pytest.fixture(scope="module")
def world():
    corpus, it = generate(seed=7, n_messages=N, now=NOW)
    return corpus, list(it)


@pytest.fixture(scope="module")
def unique(world):
    """message_id -> (first Message, parsed email), in stream order."""
    _, msgs = world
    out = {}
    for m in msgs:
        if m.message_id not in out:
            out[m.message_id] = (m, email.message_from_bytes(m.raw, policy=POLICY))
    return out


def _addrs(parsed, name):
    h = parsed[name]
    return [a.addr_spec.lower() for a in h.addresses] if h is not None else []


# --------------------------------------------------------------------------
# the world
# --------------------------------------------------------------------------


def test_corpus_shape(world):
    corpus, _ = world
    assert isinstance(corpus, Corpus)
    assert corpus.org_name == "Northwind Analytics"
    assert corpus.internal_domains == ["northwind.io"]
    assert len(corpus.reps) == 6
    assert all(email_.endswith("@northwind.io") for _, email_ in corpus.reps)
    assert len({e for _, e in corpus.reps}) == 6
    assert corpus.admins and set(corpus.admins) <= set(corpus.rep_emails)

    domains = [d for _, d in corpus.companies]
    assert len(domains) == len(set(domains)) == 40
    for tld in (".com", ".co.uk", ".de", ".io", ".com.au"):
        assert any(d.endswith(tld) for d in domains), tld
    assert set(corpus.account_owner) == set(domains)
    assert set(corpus.account_owner.values()) <= set(corpus.rep_emails)

    names = {c.name for c in corpus.contacts}
    for required in ("Zoë Müller", "José Álvarez", "Søren Kierkegaard"):
        assert required in names
    emails = [c.email for c in corpus.contacts]
    assert len(emails) == len(set(emails))
    for c in corpus.contacts:
        name, addr, company_domain, title, phone = c  # plain 5-tuple
        assert "@" in addr and addr.isascii()
        assert company_domain in domains
        assert title and phone.startswith("+")
        assert not corpus.is_internal(addr)
    freemail = sum(c.is_freemail for c in corpus.contacts) / len(corpus.contacts)
    assert 0.03 <= freemail <= 0.2
    for c in corpus.contacts:
        assert c.is_freemail or c.email_domain == c.company_domain


def test_corpus_does_not_depend_on_stream_length():
    a, _ = generate(seed=3, n_messages=10, now=NOW)
    b, _ = generate(seed=3, n_messages=5000, now=NOW)
    assert a.reps == b.reps and a.companies == b.companies and a.contacts == b.contacts


def test_custom_companies_and_reps():
    comps = [("Acme Widgets Ltd", "acme-widgets.co.uk"), ("Globex GmbH", "globex.de")]
    corpus, it = generate(seed=2, n_messages=300, reps=3, companies=comps, days=30, now=NOW)
    assert corpus.companies == comps
    assert len(corpus.reps) == 3
    msgs = list(it)
    assert len(msgs) == 300
    assert {c.company_domain for c in corpus.contacts} <= {"acme-widgets.co.uk", "globex.de"}
    corpus, _ = generate(seed=2, n_messages=0, reps=15, companies=5, now=NOW)
    assert len(corpus.reps) == 15 and len({e for _, e in corpus.reps}) == 15
    assert len(corpus.companies) == 5


# --------------------------------------------------------------------------
# the stream
# --------------------------------------------------------------------------


def test_exact_count_and_types(world):
    corpus, msgs = world
    assert len(msgs) == N
    reps = set(corpus.rep_emails)
    for m in msgs:
        assert isinstance(m, Message)
        assert isinstance(m.raw, bytes)
        assert m.mailbox in reps
        assert m.folder in ("INBOX", "Sent", "Archive")
        assert m.internaldate.tzinfo is not None and m.internaldate.utcoffset() == timedelta(0)
        assert m.kind in ("external", "internal", "bulk", "auto")
    folders = Counter(m.folder for m in msgs)
    assert folders["INBOX"] > folders["Archive"] > 0 and folders["Sent"] > 0


def test_deterministic():
    def run(seed):
        _, it = generate(seed=seed, n_messages=500, now=NOW)
        return [(m.mailbox, m.folder, m.internaldate, m.message_id, m.raw) for m in it]

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_every_message_parses_with_sane_headers(unique):
    lo = NOW - timedelta(days=DAYS + 1)
    for mid, (m, p) in unique.items():
        head, sep, _ = m.raw.partition(b"\r\n\r\n")
        assert sep, mid
        head.decode("ascii")  # headers are 7-bit (RFC 2047 for non-ASCII)
        assert m.raw.count(b"\n") == m.raw.count(b"\r\n"), "CRLF line endings only"
        assert not p.defects, (mid, p.defects)
        for part in p.walk():
            assert not part.defects, (mid, part.defects)
        for name in ("From", "To", "Date", "Message-ID", "Subject"):
            assert p[name] is not None, (mid, name)
            assert not getattr(p[name], "defects", ()), (mid, name, p[name].defects)
        assert len(p.get_all("From")) == 1 and len(p.get_all("Message-ID")) == 1
        frm = p["From"].addresses
        assert len(frm) == 1 and re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", frm[0].addr_spec)
        assert p["To"].addresses and all("@" in a.addr_spec for a in p["To"].addresses)
        dt = p["Date"].datetime
        assert dt.tzinfo is not None and lo <= dt <= NOW, (mid, dt)
        assert abs((m.internaldate - dt).total_seconds()) <= 120
        assert MSGID_RE.match(m.message_id) and p["Message-ID"].strip() == m.message_id
        body = p.get_body(("plain",))
        assert body is not None and len(body.get_content().strip()) > 20
        if p.get_content_type() == "multipart/alternative":
            assert "<" in p.get_body(("html",)).get_content()


def test_message_ids_unique_and_copies_identical(world):
    _, msgs = world
    groups = defaultdict(list)
    for m in msgs:
        groups[m.message_id].append(m)
    for mid, copies in groups.items():
        assert len({c.raw for c in copies}) == 1, mid  # byte-identical copies
        assert len({c.mailbox for c in copies}) == len(copies)  # one copy per mailbox
        assert len({c.kind for c in copies}) == 1
    # a Message-ID is never reused for different content
    raws = {}
    for m in msgs:
        assert raws.setdefault(m.message_id, m.raw) == m.raw


def test_copies_are_exactly_the_internal_participants(world, unique):
    corpus, msgs = world
    groups = defaultdict(list)
    for m in msgs:
        groups[m.message_id].append(m)
    shared = 0
    colleague_cc = 0
    for mid, (first, p) in unique.items():
        sender = _addrs(p, "From")[0]
        rcpts = _addrs(p, "To") + _addrs(p, "Cc")
        internal = {a for a in [sender] + rcpts if corpus.is_internal(a)}
        copies = {c.mailbox: c.folder for c in groups[mid]}
        assert set(copies) == internal, (mid, copies, internal)
        for mbox, folder in copies.items():
            if mbox == sender:
                assert folder == "Sent"
            else:
                assert folder in ("INBOX", "Archive")
        if len(copies) > 1:
            shared += 1
            if first.kind == "external" and any(corpus.is_internal(a) for a in _addrs(p, "Cc")):
                colleague_cc += 1
    assert shared / len(unique) >= 0.08
    assert colleague_cc > 0


def test_threads_refer_to_earlier_messages(unique):
    seen: dict[str, datetime] = {}
    depth = Counter()
    replies = 0
    for mid, (m, p) in unique.items():
        irt = p["In-Reply-To"]
        if irt is not None:
            replies += 1
            parent = str(irt).strip()
            refs = str(p["References"]).split()
            assert parent == m.in_reply_to
            assert refs and refs[-1] == parent
            for r in refs:
                assert r in seen, (mid, r)
            assert p["Date"].datetime >= seen[parent]
            assert str(p["Subject"]).startswith(("Re: ", "RE: ", "Automatic reply: "))
            depth[len(refs)] += 1
        else:
            assert m.in_reply_to is None
        seen[mid] = p["Date"].datetime
    assert replies / len(unique) > 0.3
    assert sum(v for k, v in depth.items() if k >= 2) > 0  # several rounds


def test_stream_is_chronological(unique):
    dates = [p["Date"].datetime for _, p in unique.values()]
    assert all(a <= b for a, b in zip(dates, dates[1:], strict=False))


def test_kind_mix(world, unique):
    corpus, _ = world
    kinds = Counter(m.kind for m, _ in unique.values())
    total = len(unique)
    assert 0.04 <= kinds["bulk"] / total <= 0.14
    assert 0.04 <= kinds["internal"] / total <= 0.14
    assert kinds["external"] / total > 0.6
    for m, p in unique.values():
        people = _addrs(p, "From") + _addrs(p, "To") + _addrs(p, "Cc")
        if m.kind == "bulk":
            newsletter = p["List-Unsubscribe"] is not None and str(p["Precedence"]) == "bulk"
            notification = str(p["Auto-Submitted"]) == "auto-generated"
            assert newsletter or notification
            assert not corpus.is_internal(_addrs(p, "From")[0])
        elif m.kind == "internal":
            assert all(corpus.is_internal(a) for a in people)
        elif m.kind == "auto":
            assert str(p["Auto-Submitted"]) == "auto-replied" and m.in_reply_to
        else:
            assert any(corpus.is_internal(a) for a in people)
            assert any(not corpus.is_internal(a) for a in people)
    assert any(
        str(p["From"].addresses[0].username).startswith(("no-reply", "notifications"))
        for m, p in unique.values()
        if m.kind == "bulk"
    )


def test_time_distribution(world, unique):
    _, msgs = world
    window_start = NOW - timedelta(days=DAYS)
    assert all(window_start <= m.internaldate <= NOW for m in msgs)
    recent = sum((NOW - m.internaldate) < timedelta(days=30) for m in msgs) / len(msgs)
    assert recent > 0.25  # uniform would be ~8%
    assert (NOW - min(m.internaldate for m in msgs)) > timedelta(days=200)
    business = weekday = 0
    offsets = set()
    for _m, p in unique.values():
        dt = p["Date"].datetime  # in the sender's own timezone
        offsets.add(dt.utcoffset())
        business += 8 <= dt.hour < 19
        weekday += dt.weekday() < 5
    assert business / len(unique) > 0.6
    assert weekday / len(unique) > 0.8
    assert len(offsets) >= 3


def test_encodings_and_mime_variety(world, unique):
    corpus, msgs = world
    raws = [m.raw for m, _ in unique.values()]
    low = [r[:4000].lower() for r in raws]
    assert any(b"=?utf-8?q?" in r for r in low)
    assert any(b"=?utf-8?b?" in r for r in low)
    assert any(b"content-type: multipart/alternative" in r for r in low)
    for cte in (b"quoted-printable", b"8bit", b"7bit"):
        assert any(b"content-transfer-encoding: " + cte in r for r in low), cte
    assert any(b"content-type: text/plain; charset=utf-8\r\n" in r for r in low)
    decoded_names = set()
    subjects = set()
    for _, p in unique.values():
        for h in ("From", "To", "Cc"):
            if p[h] is not None:
                decoded_names.update(a.display_name for a in p[h].addresses)
        subjects.add(str(p["Subject"]))
    non_ascii_contacts = {c.name for c in corpus.contacts if not c.name.isascii()}
    assert decoded_names & non_ascii_contacts
    assert any(not s.isascii() for s in subjects)
    assert any(s.startswith("Intro: ") and " <> " in s for s in subjects)


def test_message_sizes(unique):
    sizes = sorted(len(m.raw) for m, _ in unique.values())
    median = sizes[len(sizes) // 2]
    mean = sum(sizes) / len(sizes)
    assert 1500 <= median <= 4000 and 1500 <= mean <= 4000
    assert sizes[-1] < 20000


def test_small_and_edge_parameters():
    corpus, it = generate(seed=1, n_messages=0, now=NOW)
    assert list(it) == []
    _, it = generate(seed=1, n_messages=1, now=NOW)
    assert len(list(it)) == 1
    # one rep: no colleagues, no internal mail, still exact count
    corpus, it = generate(seed=1, n_messages=400, reps=1, days=7, now=NOW)
    msgs = list(it)
    assert len(msgs) == 400 and {m.mailbox for m in msgs} == {corpus.reps[0].email}
    assert all(m.kind != "internal" for m in msgs)
    assert all(NOW - timedelta(days=7) <= m.internaldate <= NOW for m in msgs)
    # naive now means UTC
    _, it = generate(seed=1, n_messages=50, now=NOW.replace(tzinfo=None))
    assert all(m.internaldate <= NOW for m in it)
    with pytest.raises(ValueError):
        generate(n_messages=-1)
    with pytest.raises(ValueError):
        generate(reps=0)
    with pytest.raises(ValueError):
        generate(days=0)


def test_default_now_is_today_and_recent():
    corpus, it = generate(seed=1, n_messages=50)
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    assert corpus.now in (today, today - timedelta(days=1))  # tolerate a midnight rollover
    assert all(m.internaldate <= corpus.now for m in it)


def test_streaming_is_lazy_and_memory_bounded():
    t0 = time.perf_counter()
    _, it = generate(seed=5, n_messages=10_000_000, now=NOW)
    first = list(islice(it, 100))
    assert len(first) == 100
    assert time.perf_counter() - t0 < 5

    _, it = generate(seed=5, n_messages=4_000, now=NOW)
    tracemalloc.start()
    try:
        count = 0
        for _ in it:
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 4_000
    assert peak < 6 * 1024 * 1024, peak  # 4,000 retained messages would be > 10 MB


# --------------------------------------------------------------------------
# hostile samples
# --------------------------------------------------------------------------


def test_malformed_messages():
    samples = malformed_messages()
    names = [n for n, _ in samples]
    assert len(names) == len(set(names))
    assert all(isinstance(n, str) and isinstance(b, bytes) for n, b in samples)
    d = dict(samples)
    for required in (
        "missing_from",
        "missing_date",
        "missing_message_id",
        "garbage_date",
        "from_not_an_address",
        "from_double_at",
        "from_empty_angle",
        "unicode_local_part",
        "bad_charset",
        "eight_bit_header_bytes",
        "rfc2047_invalid_base64",
        "broken_mime_boundary",
        "huge_references",
        "huge_to_5000_recipients",
        "nul_in_header",
        "headers_only_no_body",
        "empty",
        "mixed_line_endings",
    ):
        assert required in d, required
    assert d["empty"] == b""
    assert b"From:" not in d["missing_from"]
    assert b"\nDate:" not in d["missing_date"]
    assert b"Message-ID:" not in d["missing_message_id"]
    assert b"not an address" in d["from_not_an_address"] and b"a@@b" in d["from_double_at"]
    assert b"charset=x-unknown" in d["bad_charset"]
    head = d["eight_bit_header_bytes"].split(b"\r\n\r\n")[0]
    assert any(b > 127 for b in head)
    assert b"\x00" in d["nul_in_header"].split(b"\r\n\r\n")[0]
    assert b"\r\n\r\n" not in d["headers_only_no_body"]
    assert len(d["huge_references"]) >= 200_000
    assert len(d["huge_to_5000_recipients"]) >= 200_000
    assert d["huge_to_5000_recipients"].count(b"@bulk-recipients.example") == 5000
    mixed = d["mixed_line_endings"]
    assert b"\r\n" in mixed and re.search(rb"[^\r]\n", mixed)
    for _name, raw in samples:
        # the stdlib parser must not blow up on them (they exist to test ours)
        email.message_from_bytes(raw, policy=POLICY)


# --------------------------------------------------------------------------
# maildir
# --------------------------------------------------------------------------


def test_write_maildir(tmp_path, world):
    corpus, msgs = world
    rep = corpus.reps[1].email
    mine = [m for m in msgs if m.mailbox == rep]
    root = tmp_path / "Maildir"
    counts = write_maildir(root, mine)
    assert counts == dict(Counter(m.folder for m in mine))
    for sub in ("cur", "new", "tmp"):
        assert (root / sub).is_dir()
        assert (root / ".Sent" / sub).is_dir()
    assert (root / ".Sent" / "maildirfolder").exists()
    assert "Sent" in (root / "subscriptions").read_text().split()

    files = (
        list((root / "cur").iterdir())
        + list((root / ".Sent" / "cur").iterdir())
        + list((root / ".Archive" / "cur").iterdir() if (root / ".Archive").exists() else [])
    )
    assert len(files) == len(mine) and len({f.name for f in files}) == len(mine)
    by_bytes = {}
    for m in mine:
        by_bytes[m.raw] = m
    for f in files:
        m = by_bytes[f.read_bytes()]
        assert abs(f.stat().st_mtime - m.internaldate.timestamp()) < 1
        assert ":2," in f.name

    md = mailbox.Maildir(str(root), factory=None, create=False)
    assert len(md) == counts["INBOX"]
    assert "Sent" in md.list_folders()
    assert len(md.get_folder("Sent")) == counts["Sent"]

    with pytest.raises(ValueError):
        write_maildir(tmp_path / "mixed", msgs[:200])
    only = write_maildir(tmp_path / "filtered", msgs, mailbox=rep, crlf_to_lf=True)
    assert only == counts
    sample = next((tmp_path / "filtered" / "cur").iterdir()).read_bytes()
    assert b"\r\n" not in sample


def test_write_maildir_counts_every_message(tmp_path):
    _, it = generate(seed=4, n_messages=4000, reps=1, now=NOW)
    counts = write_maildir(tmp_path / "md", it)
    assert sum(counts.values()) == 4000


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def test_cli_prints_stats(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "demodata", "--n", "300", "--now", NOW.isoformat(), "--maildir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "messages/s" in out and "per folder" in out and "bulk" in out and "internal" in out
    for _, rep_email in generate(seed=1, n_messages=0, now=NOW)[0].reps:
        assert rep_email in out
    assert any(p.is_dir() for p in tmp_path.iterdir())
    assert demodata.main(["--n", "50", "--now", NOW.isoformat()]) == 0
