"""`threadline serve --demo`: the generated company is synced through the real
engine, and seeding twice changes nothing."""
from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import text

from app.api import create_app
from app.runtime import open_runtime
from app.services import demo
from app.settings import load_settings


def test_demo_seed_builds_a_usable_timeline_once(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DEMO_MESSAGES", 600)
    rt = open_runtime(load_settings({"THREADLINE_DATA_DIR": str(tmp_path), "THREADLINE_IDLE": "0"}))
    info = demo.seed_demo(rt)
    token = info.rsplit("API token ", 1)[1]

    def counts():
        with rt.engine.connect() as conn:
            return tuple(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                         for t in ("organisation", "mailbox", "interaction", "contact"))

    first = counts()
    assert first[0] == 1 and first[1] == 6 and first[2] > 100 and first[3] > 10
    with rt.engine.connect() as conn:
        status = conn.execute(text("SELECT DISTINCT status FROM mailbox")).scalars().all()
        email = conn.execute(text("SELECT primary_email FROM contact ORDER BY id LIMIT 1")).scalar()
    assert status == ["active"]

    demo.seed_demo(rt)
    assert counts() == first

    client = TestClient(create_app(rt))
    found = client.get("/api/lookup", params={"email": email}, headers={"Authorization": f"Bearer {token}"})
    assert found.status_code == 200 and found.json()["timeline"]["items"]
    # Meetings too, past and upcoming, each once however many reps were on it.
    with rt.engine.connect() as conn:
        meetings = conn.execute(text("SELECT message_key, occurred_at > CURRENT_TIMESTAMP FROM interaction "
                                     "WHERE kind = 'meeting'")).all()
        invited = conn.execute(text("SELECT c.primary_email FROM participant p JOIN contact c ON c.id = p.contact_id "
                                    "JOIN interaction i ON i.id = p.interaction_id WHERE i.kind = 'meeting' "
                                    "AND i.occurred_at > CURRENT_TIMESTAMP LIMIT 1")).scalar()
    assert meetings and len({k for k, _ in meetings}) == len(meetings)
    assert any(up for _, up in meetings) and not all(up for _, up in meetings)
    card = client.get("/api/lookup", params={"email": invited}, headers={"Authorization": f"Bearer {token}"}).json()
    assert card["next_meeting"]["kind"] == "meeting" and card["summary"]["meetings"] >= 1
