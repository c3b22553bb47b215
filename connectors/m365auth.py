"""Access tokens for Microsoft 365 through msal.

Two ways in:
- tenant-wide (application permissions): a confidential client with a client
  secret or a certificate, `acquire_token_for_client`; one app object per
  (authority, client, credential) per process so its token cache is reused;
- one user (delegated): a public client whose msal token cache (holding the
  refresh token) is the mailbox's encrypted secret. Providers rotate refresh
  tokens; when the cache changed, `updated_secret` holds the new serialization
  and the engine stores it encrypted.

msal talks to the authority with `requests`, which trusts REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

import hashlib
import json
import threading

import msal
import requests

from connectors.base import AuthError, Fix, TransientError

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
GRAPH_APP_SCOPES = ["https://graph.microsoft.com/.default"]
GRAPH_USER_SCOPES = ["https://graph.microsoft.com/Mail.Read", "https://graph.microsoft.com/Calendars.Read"]


# Graph in the national clouds is its own resource: a token for graph.microsoft.com
# is refused there. (https://learn.microsoft.com/graph/deployments)
NATIONAL_GRAPH_HOSTS = ("graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn")


def graph_scopes(graph_url: str | None, *, delegated: bool) -> list[str]:
    """Scopes for the Graph a mailbox uses (the global service unless a national cloud's host)."""
    from urllib.parse import urlsplit

    host = (urlsplit(graph_url or "").hostname or "").lower()
    if host not in NATIONAL_GRAPH_HOSTS:
        return list(GRAPH_USER_SCOPES if delegated else GRAPH_APP_SCOPES)
    origin = f"https://{host}"
    return [f"{origin}/Mail.Read", f"{origin}/Calendars.Read"] if delegated else [f"{origin}/.default"]


IMAP_USER_SCOPES = ["https://outlook.office.com/IMAP.AccessAsUser.All"]
IMAP_APP_SCOPES = ["https://outlook.office365.com/.default"]
TIMEOUT = 30

_apps: dict[tuple, msal.ConfidentialClientApplication] = {}
_apps_lock = threading.Lock()


def authority_for(tenant_id: str, override: str | None = None) -> str:
    return (override or f"{DEFAULT_AUTHORITY_HOST}/{tenant_id}").rstrip("/")


def _app_kwargs(authority: str) -> dict:
    # Instance discovery asks login.microsoftonline.com whether a host is a known
    # cloud; a configured (national cloud, test) authority is trusted as given.
    custom = not authority.startswith(DEFAULT_AUTHORITY_HOST)
    return {"authority": authority, "instance_discovery": False if custom else None, "timeout": TIMEOUT}


def parse_credential(auth_kind: str, secret: str):
    """A client secret, or for certificates the JSON {"private_key": PEM, "thumbprint": hex}."""
    if auth_kind == "certificate":
        try:
            data = json.loads(secret)
            return {"private_key": data["private_key"], "thumbprint": data["thumbprint"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthError("the stored certificate credential is unreadable", fix=Fix.APP_CREDENTIAL) from exc
    return secret


def _explain(result: dict, *, delegated: bool) -> AuthError | TransientError:
    error = result.get("error", "")
    desc = (result.get("error_description") or "").split("\r\n")[0].split("\n")[0][:300]
    fix = Fix.SIGN_IN if delegated else Fix.APP_CREDENTIAL
    if error in ("invalid_grant", "interaction_required", "expired_token"):
        return AuthError(f"Microsoft 365 sign-in has expired or was revoked ({error}: {desc})", fix=fix)
    if error in ("invalid_client", "unauthorized_client"):
        return AuthError(f"Microsoft Entra rejected the application ({error}: {desc})", fix=fix)
    if error in ("temporarily_unavailable", "server_error"):
        return TransientError(f"Microsoft Entra is unavailable ({error}: {desc})")
    return AuthError(f"Microsoft Entra refused the token request ({error or 'no token'}: {desc})", fix=fix)


class AppTokenSource:
    """App-only tokens (client credentials) for a tenant app registration."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        credential,
        *,
        authority: str | None = None,
        scopes: list[str] | None = None,
    ):
        self.authority = authority_for(tenant_id, authority)
        self.client_id = client_id
        self._credential = credential
        self.scopes = scopes or GRAPH_APP_SCOPES
        digest = hashlib.sha256(json.dumps(credential, sort_keys=True).encode()).hexdigest()
        self._key = (self.authority, client_id, digest)
        self.updated_secret = None  # app credentials never rotate here

    def _app(self) -> msal.ConfidentialClientApplication:
        with _apps_lock:
            app = _apps.get(self._key)
            if app is None:
                try:
                    app = msal.ConfidentialClientApplication(
                        self.client_id, client_credential=self._credential, **_app_kwargs(self.authority)
                    )
                except requests.RequestException as exc:
                    raise TransientError(f"cannot reach the Microsoft sign-in service: {type(exc).__name__}") from exc
                except ValueError as exc:
                    raise AuthError(f"the Microsoft 365 authority is not usable ({exc}); check the tenant id") from exc
                _apps[self._key] = app
            return app

    def token(self, *, force_refresh: bool = False) -> str:
        if force_refresh:  # the cached token was refused: start from a fresh app and cache
            with _apps_lock:
                _apps.pop(self._key, None)
        try:
            result = self._app().acquire_token_for_client(scopes=self.scopes)
        except requests.RequestException as exc:
            raise TransientError(f"cannot reach the Microsoft sign-in service: {type(exc).__name__}") from exc
        if not result or "access_token" not in result:
            raise _explain(result or {}, delegated=False)
        return result["access_token"]


class DelegatedTokenSource:
    """A signed-in user's tokens from a serialized msal cache (the mailbox secret)."""

    def __init__(
        self,
        client_id: str,
        tenant_id: str,
        cache_json: str,
        *,
        authority: str | None = None,
        scopes: list[str] | None = None,
        username: str | None = None,
    ):
        self.authority = authority_for(tenant_id or "organizations", authority)
        self.client_id = client_id
        self.scopes = scopes or GRAPH_USER_SCOPES
        self.username = username
        self.cache = msal.SerializableTokenCache()
        if cache_json:
            try:
                self.cache.deserialize(cache_json)
            except ValueError as exc:
                raise AuthError("the stored Microsoft 365 sign-in is unreadable", fix=Fix.SIGN_IN) from exc
        self._refresh_tokens = self._rt_secrets()
        self._app = None
        self.updated_secret: str | None = None
        self._lock = threading.Lock()

    def _rt_secrets(self) -> set[str]:
        return {rt.get("secret") for rt in self.cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN)}

    def app(self) -> msal.PublicClientApplication:
        if self._app is None:
            try:
                self._app = msal.PublicClientApplication(
                    self.client_id, token_cache=self.cache, **_app_kwargs(self.authority)
                )
            except requests.RequestException as exc:
                raise TransientError(f"cannot reach the Microsoft sign-in service: {type(exc).__name__}") from exc
        return self._app

    def token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            app = self.app()
            accounts = app.get_accounts(username=self.username) or app.get_accounts()
            if not accounts:
                raise AuthError("no Microsoft 365 sign-in is stored for this mailbox", fix=Fix.SIGN_IN)
            try:
                result = app.acquire_token_silent_with_error(
                    self.scopes, account=accounts[0], force_refresh=force_refresh
                )
            except requests.RequestException as exc:
                raise TransientError(f"cannot reach the Microsoft sign-in service: {type(exc).__name__}") from exc
            if self._rt_secrets() != self._refresh_tokens:  # rotated: the stored secret must follow
                self.updated_secret = self.cache.serialize()
            if not result or "access_token" not in result:
                raise _explain(
                    result or {"error": "invalid_grant", "error_description": "no usable refresh token"}, delegated=True
                )
            return result["access_token"]


def start_device_flow(
    client_id: str, tenant_id: str, *, authority: str | None = None, scopes: list[str] | None = None
) -> tuple[msal.PublicClientApplication, dict, msal.SerializableTokenCache]:
    """Begin a device-code sign-in; show flow["message"] to the person."""
    cache = msal.SerializableTokenCache()
    app = msal.PublicClientApplication(
        client_id, token_cache=cache, **_app_kwargs(authority_for(tenant_id or "organizations", authority))
    )
    flow = app.initiate_device_flow(scopes=scopes or GRAPH_USER_SCOPES)
    if "user_code" not in flow:
        raise AuthError(f"could not start the device sign-in: {flow.get('error')}: {flow.get('error_description')}")
    return app, flow, cache


def finish_device_flow(
    app: msal.PublicClientApplication, flow: dict, cache: msal.SerializableTokenCache
) -> tuple[str, str]:
    """Wait for the person to sign in; returns (their username, the serialized cache to store)."""
    result = app.acquire_token_by_device_flow(flow)
    if "access_token" not in result:
        raise _explain(result, delegated=True)
    username = (result.get("id_token_claims") or {}).get("preferred_username", "")
    return username, cache.serialize()
