"""Building a connector from plain values, and the event stream every run reads.

Kept apart from the engine (and free of database imports) because the fetch
child process (sync/pipeline.py) uses both and its start-up is on the critical
path of a first import.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Iterator

from connectors.base import ConnectorError, Folder

log = logging.getLogger("threadline.sync")


def build_connector(mailbox: dict, secret: str, want_snippet: bool):
    """A connector from plain, picklable values: mailbox holds id, kind, config,
    owner, window and (Microsoft 365 tenant-wide) tenant; secret is the
    password, token cache or tenant app credential."""
    kind = mailbox["kind"]
    if kind == "imap":
        from connectors.imap import ImapConnector, ImapSettings

        cfg = mailbox["config"]
        settings = ImapSettings(host=cfg["host"], port=int(cfg["port"]), security=cfg.get("security", "tls"),
                                username=cfg["username"], batch_size=int(cfg.get("batch_size", 1000)))
        connector = ImapConnector(settings, secret, want_snippet=want_snippet)
        # Recurring invitations found in mail are expanded over the organisation's calendar window.
        connector.calendar_window = mailbox.get("window")
        return connector
    if kind == "demo":
        from connectors.demo import DemoConnector

        return DemoConnector(mailbox["config"], mailbox["config"]["owner"])
    if kind == "m365":
        from connectors.graph import build

        return build(mailbox, secret, want_snippet)
    if kind == "caldav":
        from connectors.caldav import build

        return build(mailbox, secret, want_snippet)
    raise ConnectorError(f"unknown mailbox kind {kind!r}")


def events(connector, work: list[tuple[Folder, dict]], since: datetime) -> Iterator[tuple]:
    """("batch", folder, Batch) / ("folder_done", folder) / ("folder_error", folder, kind, message).

    Errors that concern the whole account (auth, network, throttling) end the
    run; anything else ends only that folder, and the others carry on."""
    for folder, cursor in work:
        try:
            for batch in connector.fetch_changes(folder, cursor, since):
                yield ("batch", folder.name, batch)
            yield ("folder_done", folder.name)
        except ConnectorError as exc:
            if exc.kind in ("auth", "transient", "throttled"):
                raise
            yield ("folder_error", folder.name, exc.kind, str(exc))
        except Exception as exc:  # noqa: BLE001 - one broken folder never stops the others
            log.exception("folder %s failed", folder.name)
            yield ("folder_error", folder.name, "internal", f"{type(exc).__name__}: {exc}")
