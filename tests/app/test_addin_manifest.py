"""The Outlook add-in manifest, checked structurally with an XML parser (no XSD
ships offline), and the icons it points at."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
import zlib

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.runtime import open_runtime
from app.settings import load_settings
from tests.world import runtime_env

PUBLIC = "https://crm.example.com:8443"
NS = {
    "o": "http://schemas.microsoft.com/office/appforoffice/1.1",
    "bt": "http://schemas.microsoft.com/office/officeappbasictypes/1.0",
    "v0": "http://schemas.microsoft.com/office/mailappversionoverrides",
    "v1": "http://schemas.microsoft.com/office/mailappversionoverrides/1.1",
}
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def _client(tmp_path, public_url: str) -> TestClient:
    rt = open_runtime(load_settings(runtime_env(tmp_path, THREADLINE_PUBLIC_URL=public_url)))
    return TestClient(create_app(rt))


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    client = _client(tmp_path_factory.mktemp("manifest"), PUBLIC)
    r = client.get("/addin/manifest.xml")
    yield client, r
    client.close()


def _root(fetched) -> ET.Element:
    _, r = fetched
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/xml")
    return ET.fromstring(r.content)


def test_base_manifest_elements(fetched):
    root = _root(fetched)
    assert root.tag == f"{{{NS['o']}}}OfficeApp" and root.get(XSI_TYPE) == "MailApp"
    for name in (
        "Id",
        "Version",
        "ProviderName",
        "DefaultLocale",
        "DisplayName",
        "Description",
        "IconUrl",
        "HighResolutionIconUrl",
        "SupportUrl",
        "Hosts",
        "Requirements",
        "FormSettings",
        "Permissions",
        "Rule",
    ):
        assert root.find(f"o:{name}", NS) is not None, name
    assert root.find("v0:VersionOverrides", NS) is not None
    assert root.findtext("o:Permissions", namespaces=NS) == "ReadItem"
    assert root.find("o:Hosts/o:Host", NS).get("Name") == "Mailbox"
    form = root.find("o:FormSettings/o:Form", NS)
    assert form.get(XSI_TYPE) == "ItemRead"
    assert form.find("o:DesktopSettings/o:SourceLocation", NS).get("DefaultValue") == f"{PUBLIC}/panel/outlook"
    rules = root.find("o:Rule", NS)
    assert [(r.get("ItemType"), r.get("FormType")) for r in rules] == [("Message", "Read")]
    # Order of the base elements matters to Outlook's schema validation.
    order = [child.tag.split("}")[1] for child in root]
    assert order.index("Permissions") < order.index("Rule") < order.index("VersionOverrides")
    assert order.index("Hosts") < order.index("Requirements") < order.index("FormSettings") < order.index("Permissions")


def test_read_mode_task_pane_button_pinnable_in_v1_1_with_mailbox_1_5(fetched):
    root = _root(fetched)
    v0 = root.find("v0:VersionOverrides", NS)
    assert v0.get(XSI_TYPE) == "VersionOverridesV1_0"
    v1 = v0.find("v1:VersionOverrides", NS)
    assert v1 is not None and v1.get(XSI_TYPE) == "VersionOverridesV1_1"
    sets = v1.find("v1:Requirements/bt:Sets", NS)
    assert sets.get("DefaultMinVersion") == "1.5" and sets.find("bt:Set", NS).get("Name") == "Mailbox"
    point = v1.find("v1:Hosts/v1:Host/v1:DesktopFormFactor/v1:ExtensionPoint", NS)
    assert point.get(XSI_TYPE) == "MessageReadCommandSurface"
    control = point.find("v1:OfficeTab/v1:Group/v1:Control", NS)
    assert control.get(XSI_TYPE) == "Button"
    action = control.find("v1:Action", NS)
    assert action.get(XSI_TYPE) == "ShowTaskpane"
    assert action.findtext("v1:SupportsPinning", namespaces=NS) == "true"
    # SupportsPinning only exists in V1_1: never in the V1_0 part.
    assert not [e for e in v0.iter() if e.tag.endswith("SupportsPinning") and e.tag.startswith(f"{{{NS['v0']}}}")]
    pane = action.find("v1:SourceLocation", NS).get("resid")
    urls = {u.get("id"): u.get("DefaultValue") for u in v1.findall("v1:Resources/bt:Urls/bt:Url", NS)}
    assert urls[pane] == f"{PUBLIC}/panel/outlook"
    # Every resid points at a resource that exists.
    ids = {e.get("id") for e in v1.find("v1:Resources", NS).iter() if e.get("id")}
    for e in v1.iter():
        if e.get("resid"):
            assert e.get("resid") in ids, e.get("resid")
    assert {i.get("size") for i in control.findall("v1:Icon/bt:Image", NS)} == {"16", "32", "80"}


def test_every_url_is_https_and_served_by_the_app(fetched):
    client, r = fetched
    root = _root(fetched)
    urls = []
    for e in root.iter():
        for k, v in e.attrib.items():
            if "://" in v and not k.startswith("{") and k != "xmlns":
                urls.append(v)
        if e.text and "://" in e.text:
            urls.append(e.text.strip())
    assert len(urls) >= 8
    for url in urls:
        assert url.startswith("https://"), url
        assert url.startswith(PUBLIC), url
    for url in set(urls):
        path = url[len(PUBLIC) :] or "/"
        if path.startswith("/addin/icon-") or path.startswith("/panel"):
            assert client.get(path).status_code == 200, path


@pytest.mark.parametrize("size", [16, 32, 64, 80, 128])
def test_icons_are_png_of_the_right_size(fetched, size):
    client, _ = fetched
    r = client.get(f"/addin/icon-{size}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    data = r.content
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (size, size)
    # Chunks are well formed (CRC) and the image data inflates to width*height RGBA rows.
    pos, raw = 8, b""
    while pos < len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + body)
        if kind == b"IDAT":
            raw += body
        pos += 12 + length
    pixels = zlib.decompress(raw)
    assert len(pixels) == size * (1 + 4 * size)
    assert client.get("/addin/icon-17.png").status_code == 404


def test_manifest_id_is_stable_per_deployment(fetched):
    from app.api.addin import manifest_xml

    root = _root(fetched)
    again = ET.fromstring(manifest_xml(PUBLIC))
    assert root.findtext("o:Id", namespaces=NS) == again.findtext("o:Id", namespaces=NS)
    other = ET.fromstring(manifest_xml("https://other.example.com"))
    assert other.findtext("o:Id", namespaces=NS) != root.findtext("o:Id", namespaces=NS)


def test_plain_http_public_url_is_refused_with_an_explanation(tmp_path):
    r = _client(tmp_path, "http://127.0.0.1:8000").get("/addin/manifest.xml")
    assert r.status_code == 409
    assert "HTTPS" in r.text and "THREADLINE_PUBLIC_URL" in r.text and "--https" in r.text


def test_serve_https_makes_a_local_certificate_once(tmp_path):
    import ssl

    from cryptography import x509

    from app.cli import _local_certificate

    cert, key = _local_certificate(tmp_path, "127.0.0.1")
    assert (key.stat().st_mode & 0o777) == 0o600
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(cert), str(key))  # a usable pair
    before = cert.read_bytes()
    assert _local_certificate(tmp_path, "127.0.0.1") == (cert, key) and cert.read_bytes() == before
