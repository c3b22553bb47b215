"""Whether a message that claims a sender of the organisation really is theirs.

Anyone can write `From: Rep Two <rep2@ourco.com>` and mail it to rep1 with a
stranger in Cc. Taken at its word, that stranger would become a contact Rep
Two wrote to, under the attacker's chosen name, and Rep Two would be listed
as knowing them. So mail whose From is internal counts as sent by that
colleague only when something vouches for it:

1. it is in the sender's own Sent folder (their mail client put it there);
2. it never came over SMTP: no Received field at all. Every SMTP server that
   accepts a message adds one (RFC 5321 4.4) and a sender cannot remove the
   one our server adds, so such a copy was placed by a client of the mailbox
   itself (a Sent copy moved to a project folder, an import);
3. the receiving server is the organisation's own and says the sender's
   domain passed DMARC, DKIM or SPF (Authentication-Results, see _vouches);
4. Exchange (Microsoft Graph) says an authenticated user of the organisation
   submitted it (X-MS-Exchange-Organization-AuthAs: Internal; Exchange's
   header firewall removes that header from mail coming from outside);
5. where the source cannot tell how the message arrived (a message logged by
   hand, a source without transport headers), the owner's own mail is theirs.

Otherwise it is kept as received from an unverified sender: direction "in",
the claimed address on the From row without the colleague's user id, and
the interaction flagged unverified_sender. A later copy that is vouched for
(the colleague's Sent folder syncs) turns it into their sent mail.

Internal mail between colleagues that went through the organisation's
servers without an Authentication-Results stamp (many internal relays skip
the checks) stays unverified until the sender's Sent copy is seen: the
narrow reading of "no hop from outside the organisation", since telling the
organisation's relays from others in Received fields needs their addresses.
"""

from __future__ import annotations

from connectors.base import MessageRecord
from connectors.mailparse import authentication_results


def vouched(
    record: MessageRecord, sender: str, owner_is_sender: bool, folder_role: str | None, internal_domains: frozenset[str]
) -> bool:
    if owner_is_sender and folder_role == "sent":
        return True
    if record.relayed is False or (record.relayed is None and owner_is_sender):
        return True
    if record.internal_submission:
        return True
    return _vouches(record.auth_results, sender, internal_domains)


def _within(domain: str, parent: str) -> bool:
    return domain == parent or domain.endswith("." + parent)


def _vouches(values: tuple[str, ...], sender: str, internal_domains: frozenset[str]) -> bool:
    """Whether the organisation's own receiving server passed the sender's domain.

    Threat: Authentication-Results is a header like any other, so a forger can
    write "Authentication-Results: mx.ourco.com; dmarc=pass header.from=ourco.com"
    into the message. Only a result stamped by a server of the organisation
    (authserv-id within an internal domain) is read, and of those only the
    topmost: a receiving server adds its own above whatever the message brought
    (and RFC 8601 section 5 has it delete copies carrying its own id). This holds
    only if the organisation's server does stamp its results; one that checks
    nothing and strips nothing leaves the forger's copy on top, so leave
    Authentication-Results checking (or stripping) on at the border. Results of
    other providers (mx.google.com, Exchange Online, which writes no authserv-id)
    are not trusted: nothing here can tell their stamp from a forged one.
    A pass must name the sender's own domain (aligned, as DMARC does): a
    DKIM signature of the forger's domain proves nothing about ourco.com.
    """
    domain = sender.rpartition("@")[2]
    for value in values:
        parsed = authentication_results(value)
        if parsed is None or not any(_within(parsed[0], d) for d in internal_domains):
            continue
        passed = False
        for method, result, props in parsed[1]:
            if method == "dmarc" and result == "fail":
                return False  # the organisation's own policy check failed: no other result outweighs it
            if result != "pass":
                continue
            named = {
                "dmarc": props.get("header.from"),
                "dkim": props.get("header.d") or props.get("header.i"),
                "spf": props.get("smtp.mailfrom"),
            }.get(method)
            if named:
                named = named.rpartition("@")[2]
                passed = (
                    passed or named == domain or any(_within(named, d) and _within(domain, d) for d in internal_domains)
                )
        return passed  # the topmost trusted stamp decides; older ones may be forged
    return False
