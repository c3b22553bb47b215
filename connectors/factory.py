"""Building a connector from its ConnectorSpec, and the event stream every run reads.

Kept apart from the engine (and free of database imports) because the fetch
child process (sync/pipeline.py) uses both and its start-up is on the critical
path of a first import.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Iterator

from connectors.base import (
    ConnectorError,
    ConnectorSpec,
    ErrorKind,
    Folder,
    FolderBatch,
    FolderDone,
    FolderFailed,
    SyncEvent,
)

log = logging.getLogger("threadline.sync")


def build_connector(spec: ConnectorSpec):
    """A connector for spec.kind; nothing is contacted yet."""
    if spec.kind == "imap":
        from connectors.imap import ImapConnector, ImapSettings

        cfg = spec.config
        settings = ImapSettings(
            host=cfg["host"],
            port=int(cfg["port"]),
            security=cfg.get("security", "tls"),
            username=cfg["username"],
            batch_size=int(cfg.get("batch_size", 1000)),
        )
        connector = ImapConnector(settings, spec.secret, want_snippet=spec.want_snippet)
        connector.internal_domains = frozenset(d.lower() for d in (spec.internal or {}).get("domains", ()))
        # Recurring invitations found in mail are expanded over the organisation's calendar window.
        connector.calendar_window = spec.window
        return connector
    if spec.kind == "demo":
        from connectors.demo import DemoConnector

        return DemoConnector(spec.config, spec.config["owner"])
    if spec.kind == "m365":
        from connectors.graph import build

        return build(spec)
    if spec.kind == "gmail":
        from connectors.gmail import build

        return build(spec)
    if spec.kind == "caldav":
        from connectors.caldav import build

        return build(spec)
    raise ConnectorError(f"unknown mailbox kind {spec.kind!r}")


# Errors that concern the whole account rather than one folder: they end the run.
ACCOUNT_ERRORS = (ErrorKind.AUTH, ErrorKind.TRANSIENT, ErrorKind.THROTTLED)


def events(connector, work: list[tuple[Folder, dict]], since: datetime) -> Iterator[SyncEvent]:
    """Each folder's batches, then FolderDone or FolderFailed.

    Errors that concern the whole account (auth, network, throttling) end the
    run; anything else ends only that folder, and the others carry on."""
    for folder, cursor in work:
        try:
            for batch in connector.fetch_changes(folder, cursor, since):
                yield FolderBatch(folder.name, batch)
            yield FolderDone(folder.name)
        except ConnectorError as exc:
            if exc.kind in ACCOUNT_ERRORS:
                raise
            yield FolderFailed(folder.name, exc.kind, str(exc))
        except Exception as exc:  # noqa: BLE001 - one broken folder never stops the others
            log.exception("folder %s failed", folder.name)
            yield FolderFailed(folder.name, None, f"{type(exc).__name__}: {exc}")
