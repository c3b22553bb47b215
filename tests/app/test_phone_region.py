"""The organisation's phone region: the default country of signature phone numbers
written without one, from senders whose domain names no country (sync/enrichment.py)."""

from __future__ import annotations

import pytest

from app.services import orgs
from app.services.actor import Actor
from app.services.errors import Invalid
from tests.world import make_world


def test_the_phone_region_is_set_in_capitals_cleared_and_checked(tmp_path):
    w = make_world(tmp_path)
    op = Actor.operator(w.org_id)
    assert orgs.update_org(w.rt, op, {"phone_region": "gb"})["phone_region"] == "GB"
    with pytest.raises(Invalid) as refused:
        orgs.update_org(w.rt, op, {"phone_region": "XX"})
    assert refused.value.field == "phone_region" and "region code" in str(refused.value)
    assert w.scalar("SELECT phone_region FROM organisation WHERE id = :o", o=w.org_id) == "GB"  # kept
    assert orgs.update_org(w.rt, op, {"phone_region": None})["phone_region"] is None
