"""The people and companies: reps, customer companies with their mail systems, and their contacts."""

from __future__ import annotations

import random
from datetime import datetime

from demodata.draw import _cum, _wchoice
from demodata.encoding import _ascii_slug, _offstr, _phrase
from demodata.model import Company, Contact, Corpus, Rep
from demodata.vocabulary import (
    _BULK_NEWS,
    _BULK_NOTIFY,
    _CO_PREFIX,
    _CO_SECTOR,
    _FIRST,
    _FIXED_CONTACTS,
    _FREEMAIL_MAILER,
    _FREEMAIL_WEIGHTS,
    _LAST,
    _REP_MAILER,
    _REP_POOL,
    _REP_TZ,
    _TITLES,
    _TLD_BY_NAME,
    _TLDS,
    FREEMAIL_DOMAINS,
    ORG_DOMAIN,
    ORG_NAME,
)


class _Person:
    __slots__ = (
        "name",
        "email",
        "first",
        "domain",
        "off",
        "offstr",
        "mailer",
        "internal",
        "sig",
        "addr",
        "title",
        "company",
        "outlook_srv",
        "idx",
        "lang",
        "from_line",
        "to_line",
        "dkim_head",
        "trace",
    )

    def __init__(
        self, name, email, title, company, off, mailer, internal, phone, lang="en", display=None, outlook_srv=""
    ):
        self.name = name
        self.email = email
        self.first = name.split(" ")[0]
        self.domain = email.rpartition("@")[2]
        self.off = off
        self.offstr = _offstr(off)
        self.mailer = mailer
        self.internal = internal
        self.title = title
        self.company = company
        self.lang = lang
        self.outlook_srv = outlook_srv
        self.idx = 0
        shown = display if display is not None else name
        if shown:
            self.addr = tuple("%s <%s>" % (_phrase(shown, s), email) for s in (0, 1, 2))
        else:
            self.addr = (email, email, email)
        self.sig = "-- \r\n%s\r\n%s | %s\r\n%s\r\n" % (name, title, company, phone)
        # pre-rendered header pieces (the hot path only concatenates)
        self.from_line = tuple("From: %s\r\n" % a for a in self.addr)
        self.to_line = tuple("To: %s\r\n" % a for a in self.addr)
        dom = self.domain
        self.dkim_head = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s;\r\n        s=%s; t=" % (
            dom,
            "google" if dom == ORG_DOMAIN else "selector1",
        )
        self.trace = (
            "Return-Path: <"
            + email
            + ">\r\nReceived: from mail-"
            + dom
            + " (mail-"
            + dom
            + " [%s])\r\n        by mx.northwind.io with ESMTPS id %s\r\n"
            "        (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384);\r\n        %s\r\n"
            "Authentication-Results: mx.northwind.io;\r\n       dkim=pass header.d="
            + dom
            + ";\r\n       spf=pass (domain of "
            + email
            + " designates %s as"
            " permitted sender) smtp.mailfrom=" + email + ";\r\n       dmarc=pass"
            " header.from=" + dom + "\r\n"
        )


def _build_world(seed: int, n_reps: int, companies, days: int, now: datetime):
    rng = random.Random("mailgen-corpus:%s" % seed)
    org_domain = ORG_DOMAIN

    # reps
    reps: list[_Person] = []
    used_local: set[str] = set()
    pool = list(_REP_POOL)
    for i in range(n_reps):
        if i < len(pool):
            name, title = pool[i]
        else:
            while True:
                name = "%s %s" % (rng.choice(_FIRST), rng.choice(_LAST))
                if all(name != r.name for r in reps):
                    break
            title = rng.choice(
                ["Account Executive", "Sales Development Rep", "Customer Success Manager", "Solutions Engineer"]
            )
        first = _ascii_slug(name.split(" ")[0])
        local = first
        if local in used_local:
            local = first + "." + _ascii_slug(name.split(" ", 1)[1])
        n = 2
        while local in used_local:
            local = "%s%d" % (first, n)
            n += 1
        used_local.add(local)
        reps.append(
            _Person(
                name,
                "%s@%s" % (local, org_domain),
                title,
                ORG_NAME,
                _REP_TZ[i % len(_REP_TZ)],
                _REP_MAILER[i % len(_REP_MAILER)],
                True,
                "+1 (646) 555-01%02d" % (10 + i % 90),
            )
        )

    # companies
    tld_items = [t[0] for t in _TLDS]
    tld_cum = _cum(t[2] for t in _TLDS)
    comp_rows: list[tuple[str, str, str]] = []  # name, domain, tld
    if companies is None:
        companies = 40
    if isinstance(companies, int):
        used_domains: set[str] = set()
        used_names: set[str] = set()
        attempts = 0
        # every corpus has these TLDs (the first companies get one each)
        forced = [".com", ".co.uk", ".de", ".io", ".com.au", ".es", ".dk"]
        while len(comp_rows) < companies:
            attempts += 1
            if len(comp_rows) < len(forced):
                tld = forced[len(comp_rows)]
            else:
                tld = _wchoice(rng, tld_items, tld_cum)
            meta = _TLD_BY_NAME[tld]
            suffix = rng.choice(meta[1])
            if rng.random() < 0.12:
                a, b = rng.sample(_LAST[:20] + _LAST[35:], 2)
                base = "%s & %s" % (a, b)
                suffix = {"": "", "Inc.": "LLP", "LLC": "LLP", "Corp.": "LLP"}.get(suffix, suffix)
                dom = _ascii_slug(a) + _ascii_slug(b)
            else:
                p, s = rng.choice(_CO_PREFIX), rng.choice(_CO_SECTOR)
                base = "%s %s" % (p, s)
                r = rng.random()
                if tld in (".io", ".ai", ".co") and r < 0.6:
                    dom = _ascii_slug(p)
                elif r < 0.3:
                    dom = _ascii_slug(p) + "-" + _ascii_slug(s)
                else:
                    dom = _ascii_slug(p) + _ascii_slug(s)
            domain = dom + tld
            if attempts > 30:  # name space getting crowded (thousands of companies)
                domain = "%s%d%s" % (dom, len(comp_rows), tld)
                base = "%s %d" % (base, len(comp_rows))
            if domain in used_domains or base in used_names:
                continue
            attempts = 0
            used_domains.add(domain)
            used_names.add(base)
            name = base + (" " + suffix if suffix else "")
            comp_rows.append((name, domain, tld))
        rng.shuffle(comp_rows)
    else:
        for name, domain in companies:
            tld = next((t for t in sorted(tld_items, key=len, reverse=True) if domain.endswith(t)), ".com")
            comp_rows.append((name, domain, tld))
    if not comp_rows:
        raise ValueError("at least one company is required")

    # per company: mail system, timezone, outlook tenant, owner rep
    company_meta = []
    for ci, (_cname, _domain, tld) in enumerate(comp_rows):
        meta = _TLD_BY_NAME.get(tld, _TLDS[0])
        system = rng.choices(["outlook", "gmail", "apple", "generic"], [45, 38, 7, 10])[0]
        srv = "%s%02dMB%04d" % (
            rng.choice(["DM6PR", "BN7PR", "CH2PR", "SA1PR", "AM0PR", "DB9PR", "PA4PR", "SY4PR", "LO2P", "MW4PR"]),
            rng.randint(1, 19),
            rng.randint(1000, 9999),
        )
        outlook_host = "%s.%s%02d.prod.outlook.com" % (srv, meta[5], rng.randint(1, 12))
        company_meta.append(
            {
                "system": system,
                "off": rng.choice(meta[3]),
                "phone": meta[4],
                "outlook": (srv, outlook_host),
                "lang": meta[6],
                "owner": reps[ci % len(reps)] if len(reps) < 3 else reps[(ci % (len(reps) - 1)) + 1],
            }
        )

    # contacts
    freemail_cum = _cum(_FREEMAIL_WEIGHTS)
    contacts_by_company: list[list[_Person]] = [[] for _ in comp_rows]
    contacts: list[_Person] = []
    contact_rows: list[Contact] = []
    used_emails: set[str] = set(r.email for r in reps)

    fixed_for: dict[int, list[str]] = {}
    taken: set[int] = set()
    for fname, pref_tld in _FIXED_CONTACTS:
        cands = [i for i, row in enumerate(comp_rows) if row[2] == pref_tld and i not in taken]
        if not cands:
            cands = [i for i in range(len(comp_rows)) if i not in taken] or [0]
        ci = cands[0]
        taken.add(ci)
        fixed_for.setdefault(ci, []).append(fname)

    def phone_for(style: str) -> str:
        if style == "uk":
            return "+44 20 7946 0%03d" % rng.randint(0, 999)
        if style == "de":
            return "+49 30 %d %d" % (rng.randint(1000, 9999), rng.randint(100, 999))
        if style == "au":
            return "+61 2 5550 %04d" % rng.randint(0, 9999)
        if style == "fr":
            return "+33 1 99 00 %02d %02d" % (rng.randint(0, 99), rng.randint(0, 99))
        if style == "nl":
            return "+31 20 %03d %04d" % (rng.randint(100, 999), rng.randint(0, 9999))
        if style == "dk":
            return "+45 %02d %02d %02d %02d" % tuple(rng.randint(10, 99) for _ in range(4))
        if style == "es":
            return "+34 91 %03d %02d %02d" % (rng.randint(100, 999), rng.randint(0, 99), rng.randint(0, 99))
        return "+1 (%d) 555-01%02d" % (rng.choice([212, 415, 617, 312, 512, 206, 303, 646]), rng.randint(0, 99))

    for ci, (cname, domain, _tld) in enumerate(comp_rows):
        meta = company_meta[ci]
        k = rng.choice([2, 2, 3, 3, 3, 4, 4, 5, 6])
        names = list(fixed_for.get(ci, []))
        while len(names) < k:
            nm = "%s %s" % (rng.choice(_FIRST), rng.choice(_LAST))
            if nm not in names:
                names.append(nm)
        for j, name in enumerate(names):
            first, _, last = name.partition(" ")
            f, l = _ascii_slug(first), _ascii_slug(last)
            freemail = (j > 0 or ci not in fixed_for) and rng.random() < 0.10
            if freemail:
                dom = _wchoice(rng, FREEMAIL_DOMAINS, freemail_cum)
                local = rng.choice(["%s.%s", "%s%s", "%s_%s"]) % (f, l)
                if rng.random() < 0.6:
                    local += str(rng.randint(1, 99))
                mailer = _FREEMAIL_MAILER.get(dom, "generic")
            else:
                dom = domain
                r = rng.random()
                if r < 0.55:
                    local = "%s.%s" % (f, l)
                elif r < 0.75:
                    local = f[0] + l
                elif r < 0.85:
                    local = f
                elif r < 0.92:
                    local = "%s_%s" % (f, l)
                else:
                    local = f + l[0]
                mailer = meta["system"]
                if rng.random() < 0.12:
                    mailer = rng.choice(["apple", "thunderbird"])
            email = "%s@%s" % (local, dom)
            n = 2
            while email in used_emails:
                email = "%s%d@%s" % (local, n, dom)
                n += 1
            used_emails.add(email)
            title = rng.choice(_TITLES)
            phone = phone_for(meta["phone"])
            display = name
            r = rng.random()
            if mailer == "outlook" and r < 0.15 and last:
                display = "%s, %s" % (last, first)
            elif r < 0.04:
                display = ""  # bare address, no display name
            p = _Person(
                name,
                email,
                title,
                cname,
                meta["off"],
                mailer,
                False,
                phone,
                lang=meta["lang"],
                display=display,
                outlook_srv=meta["outlook"],
            )
            p.idx = ci
            contacts_by_company[ci].append(p)
            contacts.append(p)
            contact_rows.append(Contact(name, email, domain, title, phone))

    for r_ in reps:
        r_.outlook_srv = (
            "DM6PR04MB%04d" % rng.randint(1000, 9999),
            "DM6PR04MB%04d.namprd04.prod.outlook.com" % rng.randint(1000, 9999),
        )

    corpus = Corpus(
        org_name=ORG_NAME,
        internal_domains=[org_domain],
        reps=[Rep(r.name, r.email) for r in reps],
        companies=[Company(n, d) for n, d, _ in comp_rows],
        contacts=contact_rows,
        admins=[reps[0].email],
        account_owner={comp_rows[i][1]: company_meta[i]["owner"].email for i in range(len(comp_rows))},
        bulk_senders=[(n, e) for n, e, _ in _BULK_NEWS] + [(n, e) for n, e, _ in _BULK_NOTIFY],
        seed=seed,
        days=days,
        now=now,
    )
    return corpus, reps, comp_rows, company_meta, contacts_by_company
