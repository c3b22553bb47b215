"""The one error vocabulary above the connectors.

A use case (app/services) that refuses raises one of these, with a message written
for the person who asked: it is shown as it is by the API, the console and the CLI.
Each adapter maps the kinds once: `HTTP_STATUS` (app/api/__init__.py registers one
handler), the console's flash message (app/api/admin_pages.py), `EXIT_CODE` (app/cli.py).

Invalid names the field at fault when there is one, so a form can point at it and
an API client can read it without parsing the sentence.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal meant for people: `reason` is safe to show, never a secret or SQL."""

    kind = "error"

    def __init__(self, reason: str, *, field: str | None = None, facts: dict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.facts = dict(facts or {})  # machine-readable context, e.g. the existing contact's id

    def as_dict(self) -> dict:
        out = {"detail": self.reason, "error": self.kind, **self.facts}
        if self.field:
            out["field"] = self.field
        return out


class NotFound(ServiceError, LookupError):
    """No such thing in the caller's organisation (another organisation's ids look the same)."""

    kind = "not_found"


class Invalid(ServiceError, ValueError):
    """The request is wrong: a value out of range, a malformed address, a missing field."""

    kind = "invalid"


class Forbidden(ServiceError, PermissionError):
    """The actor may not do this: not an admin, deactivated, or acting for another organisation."""

    kind = "forbidden"


class Conflict(ServiceError):
    """The request is fine but the current state refuses it (already exists, still in use, paused)."""

    kind = "conflict"


HTTP_STATUS: dict[type[ServiceError], int] = {NotFound: 404, Invalid: 422, Forbidden: 403, Conflict: 409}

# CLI exit codes: 1 stays "something went wrong" (typer's own), 2 is click's usage error.
EXIT_CODE: dict[type[ServiceError], int] = {Invalid: 2, NotFound: 3, Forbidden: 4, Conflict: 5}


def http_status(exc: ServiceError) -> int:
    return next((code for kind, code in HTTP_STATUS.items() if isinstance(exc, kind)), 400)


def exit_code(exc: ServiceError) -> int:
    return next((code for kind, code in EXIT_CODE.items() if isinstance(exc, kind)), 1)
