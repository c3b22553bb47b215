"""`threadline contacts import`, `threadline segment list|save|export` and `threadline export org`
as an admin runs them at the server: the CLI in-process (tests/cli.py), row errors as exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

from tests.app.test_cli_admin import _cli, _ok


def test_import_segments_and_exports_from_the_command_line(tmp_path: Path):
    _ok(tmp_path, "org", "init", "--name", "OurCo", "--domain", "ourco.com")
    _ok(tmp_path, "user", "add", "alice@ourco.com")
    people = tmp_path / "people.csv"
    people.write_text(
        'Courriel;Nom;Étiquettes\nann@acmecorp.com;Ann Acme;vip\nbad;Bad;\nben@acmecorp.com;=HYPERLINK("x");vip\n',
        encoding="cp1252",
    )
    mapping = "email=Courriel,name=Nom,tags=Étiquettes"
    dry = _cli(tmp_path, "contacts", "import", str(people), "--map", mapping, "--dry-run")
    assert dry.returncode == 2 and "row 3: not a valid email address" in dry.stderr
    assert "not UTF-8" in dry.stderr  # the guessed encoding is said, not silent
    ok = _ok(tmp_path, "contacts", "import", str(people), "--map", mapping, "--skip-invalid")
    assert "created 2" in ok
    again = json.loads(_ok(tmp_path, "contacts", "import", str(people), "--map", mapping, "--skip-invalid", "--json"))
    assert (again["created"], again["unchanged"]) == (0, 2)

    _ok(tmp_path, "segment", "save", "VIPs", "--filters", '{"tags": ["vip"]}')
    listed = json.loads(_ok(tmp_path, "segment", "list", "--json"))
    assert [(s["name"], s["shared"]) for s in listed] == [("VIPs", True)]
    csv_text = _ok(tmp_path, "segment", "export", "VIPs")
    assert "'=HYPERLINK" in csv_text and "ann@acmecorp.com" in csv_text
    vcf = tmp_path / "vips.vcf"
    _ok(tmp_path, "segment", "export", str(listed[0]["id"]), "--format", "vcard3", "--out", str(vcf))
    assert vcf.read_text().count("BEGIN:VCARD") == 2 and "VERSION:3.0" in vcf.read_text()
    missing = _cli(tmp_path, "segment", "export", "Nope")
    assert missing.returncode == 3  # NotFound

    out = tmp_path / "org.json"
    _ok(tmp_path, "export", "org", "--out", str(out))
    doc = json.loads(out.read_text())
    assert sorted(c["primary_email"] for c in doc["contacts"]) == ["ann@acmecorp.com", "ben@acmecorp.com"]
    assert not (tmp_path / "org.json.partial").exists()
