"""The Outlook add-in: its XML manifest (add-in-only manifest) and its icons.

The manifest is generated from the configured public URL (THREADLINE_PUBLIC_URL),
which Outlook requires to be HTTPS. It declares a mail read-mode task pane
opened by a ribbon button, pinnable (SupportsPinning, VersionOverrides 1.1,
Mailbox 1.5), with the ReadItem permission. Icons are drawn by code below.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from functools import lru_cache
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse, Response

from app.api.deps import RuntimeDep

router = APIRouter(tags=["outlook add-in"])
ICON_SIZES = (16, 32, 64, 80, 128)
BRAND = (0x1F, 0x5F, 0xBF)  # the icon's blue
PANE_PATH = "/panel/outlook"
VERSION = "1.0.0.0"


# -- icons: a tiny PNG encoder --------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, pixels: list[list[tuple[int, int, int, int]]]) -> bytes:
    """RGBA pixels (rows of (r, g, b, a)) as a PNG file."""
    raw = bytearray()
    for row in pixels:
        raw.append(0)  # filter: none
        for r, g, b, a in row:
            raw += bytes((r, g, b, a))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + _chunk(b"IEND", b"")
    )


@lru_cache(maxsize=len(ICON_SIZES))
def icon(size: int) -> bytes:
    """A rounded blue square with a white thread: a line with three knots (people on a timeline)."""
    s = float(size)
    radius = s * 0.22
    line_half = max(0.5, s * 0.06)
    knot = s * 0.12
    knots = [(s * 0.27, s * 0.5), (s * 0.5, s * 0.5), (s * 0.73, s * 0.5)]
    rows = []
    for y in range(size):
        row = []
        for x in range(size):
            cx, cy = x + 0.5, y + 0.5
            # rounded-rectangle mask
            dx = max(radius - cx, 0.0, cx - (s - radius))
            dy = max(radius - cy, 0.0, cy - (s - radius))
            if dx * dx + dy * dy > radius * radius:
                row.append((0, 0, 0, 0))
                continue
            white = (s * 0.18 <= cx <= s * 0.82 and abs(cy - s * 0.5) <= line_half) or any(
                (cx - kx) ** 2 + (cy - ky) ** 2 <= knot * knot for kx, ky in knots
            )
            row.append((255, 255, 255, 255) if white else (*BRAND, 255))
        rows.append(row)
    return png(size, size, rows)


@router.get("/addin/icon-{size}.png", summary="Add-in icon", response_class=Response, include_in_schema=False)
def icon_png(size: int) -> Response:
    if size not in ICON_SIZES:
        raise HTTPException(404, "no icon of that size")
    return Response(icon(size), media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})


# -- the manifest ----------------------------------------------------------------------


class NotHttps(ValueError):
    pass


def _base(public_url: str) -> str:
    parts = urlsplit(public_url)
    if parts.scheme != "https" or not parts.hostname:
        raise NotHttps(
            f"Outlook loads add-ins over HTTPS only, and the public URL is {public_url!r}. Set "
            "THREADLINE_PUBLIC_URL to the https:// address reps reach this server at (behind a TLS proxy), "
            "or for a local trial run `threadline serve --https` with THREADLINE_PUBLIC_URL=https://localhost:8000."
        )
    return public_url.rstrip("/")


def _surface(base: str, version: str) -> str:
    """The ribbon button that opens the task pane (the same in both VersionOverrides,
    except that only 1.1 knows SupportsPinning)."""
    pinning = "\n                  <SupportsPinning>true</SupportsPinning>" if version == "1.1" else ""
    images = "\n".join(f'              <bt:Image size="{n}" resid="Icon.{n}"/>' for n in (16, 32, 80))
    return f"""      <Requirements>
        <bt:Sets DefaultMinVersion="{"1.5" if version == "1.1" else "1.3"}">
          <bt:Set Name="Mailbox"/>
        </bt:Sets>
      </Requirements>
      <Hosts>
        <Host xsi:type="MailHost">
          <DesktopFormFactor>
            <ExtensionPoint xsi:type="MessageReadCommandSurface">
              <OfficeTab id="TabDefault">
                <Group id="threadlineReadGroup">
                  <Label resid="Group.Label"/>
                  <Control xsi:type="Button" id="threadlineOpenPane">
                    <Label resid="Button.Label"/>
                    <Supertip>
                      <Title resid="Button.Label"/>
                      <Description resid="Button.Tooltip"/>
                    </Supertip>
                    <Icon>
{images}
                    </Icon>
                    <Action xsi:type="ShowTaskpane">
                      <SourceLocation resid="Pane.Url"/>{pinning}
                    </Action>
                  </Control>
                </Group>
              </OfficeTab>
            </ExtensionPoint>
          </DesktopFormFactor>
        </Host>
      </Hosts>
      <Resources>
        <bt:Images>
          <bt:Image id="Icon.16" DefaultValue={quoteattr(f"{base}/addin/icon-16.png")}/>
          <bt:Image id="Icon.32" DefaultValue={quoteattr(f"{base}/addin/icon-32.png")}/>
          <bt:Image id="Icon.80" DefaultValue={quoteattr(f"{base}/addin/icon-80.png")}/>
        </bt:Images>
        <bt:Urls>
          <bt:Url id="Pane.Url" DefaultValue={quoteattr(f"{base}{PANE_PATH}")}/>
        </bt:Urls>
        <bt:ShortStrings>
          <bt:String id="Group.Label" DefaultValue="Threadline"/>
          <bt:String id="Button.Label" DefaultValue="Threadline"/>
        </bt:ShortStrings>
        <bt:LongStrings>
          <bt:String id="Button.Tooltip" DefaultValue="Who is this? The shared timeline, notes and tasks for the people on this email."/>
        </bt:LongStrings>
      </Resources>"""


def manifest_xml(public_url: str) -> str:
    base = _base(public_url)
    host = urlsplit(base).hostname
    addin_id = uuid.uuid5(uuid.NAMESPACE_URL, f"threadline-outlook-addin:{base}")
    inner = _surface(base, "1.1").replace("\n", "\n  ")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<OfficeApp xmlns="http://schemas.microsoft.com/office/appforoffice/1.1"
           xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
           xmlns:bt="http://schemas.microsoft.com/office/officeappbasictypes/1.0"
           xmlns:mailappor="http://schemas.microsoft.com/office/mailappversionoverrides/1.0"
           xsi:type="MailApp">
  <Id>{addin_id}</Id>
  <Version>{VERSION}</Version>
  <ProviderName>Threadline</ProviderName>
  <DefaultLocale>en-US</DefaultLocale>
  <DisplayName DefaultValue={quoteattr(f"Threadline ({host})")}/>
  <Description DefaultValue="The shared contact timeline from your team's mailboxes, beside every email."/>
  <IconUrl DefaultValue={quoteattr(f"{base}/addin/icon-64.png")}/>
  <HighResolutionIconUrl DefaultValue={quoteattr(f"{base}/addin/icon-128.png")}/>
  <SupportUrl DefaultValue={quoteattr(f"{base}/panel")}/>
  <AppDomains>
    <AppDomain>{escape(base)}</AppDomain>
  </AppDomains>
  <Hosts>
    <Host Name="Mailbox"/>
  </Hosts>
  <Requirements>
    <Sets>
      <Set Name="Mailbox" MinVersion="1.1"/>
    </Sets>
  </Requirements>
  <FormSettings>
    <Form xsi:type="ItemRead">
      <DesktopSettings>
        <SourceLocation DefaultValue={quoteattr(f"{base}{PANE_PATH}")}/>
        <RequestedHeight>250</RequestedHeight>
      </DesktopSettings>
    </Form>
  </FormSettings>
  <Permissions>ReadItem</Permissions>
  <Rule xsi:type="RuleCollection" Mode="Or">
    <Rule xsi:type="ItemIs" ItemType="Message" FormType="Read"/>
  </Rule>
  <DisableEntityHighlighting>false</DisableEntityHighlighting>
  <VersionOverrides xmlns="http://schemas.microsoft.com/office/mailappversionoverrides" xsi:type="VersionOverridesV1_0">
{_surface(base, "1.0")}
    <VersionOverrides xmlns="http://schemas.microsoft.com/office/mailappversionoverrides/1.1" xsi:type="VersionOverridesV1_1">
  {inner}
    </VersionOverrides>
  </VersionOverrides>
</OfficeApp>
"""


@router.get(
    "/addin/manifest.xml",
    summary="The Outlook add-in manifest for this server (sideload it in Outlook)",
    response_class=Response,
    responses={
        200: {
            "description": "the manifest, as a download",
            "content": {"application/xml": {"schema": {"type": "string"}}},
        },
        409: {
            "description": "the public URL is not HTTPS (the fix, in words)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
    },
)
def manifest(rt: RuntimeDep) -> Response:
    try:
        xml = manifest_xml(rt.settings.public_url)
    except NotHttps as exc:
        return PlainTextResponse(str(exc), status_code=409)
    return Response(
        xml,
        media_type="application/xml",
        headers={"Content-Disposition": 'attachment; filename="threadline-outlook.xml"'},
    )
