"""`threadline serve --demo`: the generated company is synced through the real
engine, and seeding twice changes nothing."""
from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import text

from app.api import create_app
from app.demo import seed
from app.runtime import open_runtime
from app.settings import load_settings


def test_demo_seed_builds_a_usable_timeline_once(tmp_path, monkeypatch):
    monkeypatch.setattr(seed, "DEMO_MESSAGES", 600)
    rt = open_runtime(load_settings({"THREADLINE_DATA_DIR": str(tmp_path), "THREADLINE_IDLE": "0"}))
    info = seed.seed_demo(rt)
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

    seed.seed_demo(rt)
    assert counts() == first

    client = TestClient(create_app(rt))
    found = client.get("/api/lookup", params={"email": email}, headers={"Authorization": f"Bearer {token}"})
    assert found.status_code == 200 and found.json()["timeline"]["items"]
