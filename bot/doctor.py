"""`zqbo doctor --live`: what the bot will do against the real Slack and Intuit, read-only.

Each check is a Finding (one line of doctor's report). Nothing here writes: no alert, no cursor,
no check result, no Slack message. The one exception is the bot's own token keeping: a company
whose access token is due is refreshed through the connection manager, exactly as a scheduled
check would (the rotated refresh token is stored at once); a token that is not due is never
rotated, and a 401 on it is reported instead of answered with a refresh.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from quickbooks.objects.company_info import CompanyInfo
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.app import SCOPES, slack_client
from bot.config import Settings
from bot.models import Connection, ConnectionStatus
from bot.qbo.client import RetryPolicy
from bot.qbo.errors import AccessDenied, ConnectionLost, QBOError, RequestRejected, TransientError
from bot.qbo.http import DEFAULT_TIMEOUT
from bot.qbo.intuit import discovery_url
from bot.redact import REDACTOR
from bot.services import Services
from bot.store.crypto import read_key_file

# The keys of Intuit's OpenID discovery document that intuit-oauth (and so zqbo) reads.
DISCOVERY_KEYS = (
    "authorization_endpoint",
    "token_endpoint",
    "revocation_endpoint",
    "userinfo_endpoint",
    "issuer",
    "jwks_uri",
)
# A look, not a job: one retry tells a blip from an outage without keeping the user waiting.
DOCTOR_RETRY = RetryPolicy(attempts=2, max_wait=5, max_total=20)
CDC_WINDOW = timedelta(days=1)
MAX_WORKSPACES = 50  # auth.test per installation; beyond this, say how many were left out


@dataclass(frozen=True)
class Finding:
    """One line of doctor's report. A note informs and never fails the run."""

    name: str
    ok: bool
    detail: str
    note: bool = False

    def line(self) -> str:
        mark = "note" if self.note else ("ok  " if self.ok else "BAD ")
        return REDACTOR(f"{mark} {self.name}: {self.detail}")


# Slack ----------------------------------------------------------------------------------------------
def granted_scopes(headers: Mapping[str, Any]) -> set[str] | None:
    """The scopes Slack says the token has: the `x-oauth-scopes` header of any Web API answer."""
    for key, value in headers.items():
        if key.lower() == "x-oauth-scopes":
            text = value[0] if isinstance(value, list) else str(value)
            return {scope.strip() for scope in text.split(",") if scope.strip()}
    return None


def scope_findings(
    granted: set[str] | None, wanted: Iterable[str], name: str = "slack scopes"
) -> list[Finding]:
    """Every scope zqbo asks for that the token lacks, by name (extra scopes are only mentioned)."""
    wanted = list(wanted)
    if granted is None:
        return [
            Finding(
                name,
                True,
                "Slack's answer had no x-oauth-scopes header, so the granted scopes cannot be compared; "
                f"check by hand that the app has {', '.join(wanted)}",
                note=True,
            )
        ]
    missing = [scope for scope in wanted if scope not in granted]
    found = [
        Finding(name, False, f"missing scope {scope}: add it under OAuth & Permissions and reinstall")
        for scope in missing
    ]
    if not missing:
        found.append(Finding(name, True, f"all {len(wanted)} bot scopes zqbo asks for are granted"))
    extra = sorted(granted - set(wanted))
    if extra:
        found.append(Finding(name, True, f"also granted, not needed: {', '.join(extra)}", note=True))
    return found


def _auth_test(client: WebClient, name: str, wanted: Sequence[str], whose: str) -> list[Finding]:
    try:
        resp = client.auth_test()
    except SlackApiError as exc:
        # (not "token: error": the redaction net would take the error for a token)
        return [Finding(name, False, f"Slack refused {whose} ({exc.response.get('error')})")]
    except Exception as exc:  # network, TLS, a bad SLACK_API_URL
        return [Finding(name, False, f"{client.base_url} cannot be reached ({type(exc).__name__})")]
    team = f"{resp.get('team')} ({resp.get('team_id')})"
    found = [Finding(name, True, f"auth.test: bot {resp.get('user')} ({resp.get('user_id')}) in {team}")]
    return found + scope_findings(granted_scopes(resp.headers), wanted, f"{name} scopes")


def slack_checks(services: Services, wanted: Sequence[str] = SCOPES) -> list[Finding]:
    """auth.test with the bot token (or each installation's), through zqbo's own Slack client
    (SLACK_API_URL, the retry handlers), and the granted scopes against the manifest's (SCOPES:
    what Bolt asks for at install, the same list as app_manifest.yml)."""
    settings = services.settings
    if not settings.multi_workspace:
        return _auth_test(doctor_slack_client(settings), "slack", wanted, "SLACK_BOT_TOKEN")
    installations = services.installations
    if installations is None:
        return [Finding("slack", False, "many workspaces, but no installation store")]
    scopes = installations.installed()
    if not scopes:
        return [
            Finding(
                "slack",
                True,
                f"many workspaces: none has installed zqbo yet (Add to Slack at {settings.public_url}"
                "/slack/install); each installation's bot token is checked once there is one",
            )
        ]
    found = [Finding("slack", True, f"many workspaces: {len(scopes)} installed")]
    for scope in scopes[:MAX_WORKSPACES]:
        name = f"slack {scope}"
        try:
            token = installations.bot_token(scope)  # a rotating token is renewed only when due
        except Exception as exc:
            found.append(Finding(name, False, f"its bot token could not be renewed ({type(exc).__name__})"))
            continue
        if not token:
            found.append(
                Finding(name, False, "the installation holds no usable bot token (see the log for why)")
            )
            continue
        found += _auth_test(doctor_slack_client(settings, token), name, wanted, "this workspace's bot token")
    if len(scopes) > MAX_WORKSPACES:
        found.append(
            Finding(
                "slack",
                True,
                f"checked the first {MAX_WORKSPACES} of {len(scopes)} installations",
                note=True,
            )
        )
    return found


def doctor_slack_client(settings: Settings, token: str | None = None) -> WebClient:
    """A look, not a job: one attempt and a short timeout (the bot's own client retries)."""
    client = slack_client(settings, token)
    client.retry_handlers = []
    client.timeout = 5
    return client


# The store --------------------------------------------------------------------------------------------
def sqlite_not_yet(settings: Settings) -> Finding | None:
    """Doctor looks and never creates: with SQLite, a database that is not there yet (or whose key
    is gone) is reported, not made; None when there is one to open."""
    if settings.redis_url or settings.database_url:
        return None
    path = Path(settings.db_path).absolute()
    if not path.exists():
        if os.access(path.parent, os.W_OK | os.X_OK):
            return Finding(
                "store",
                True,
                f"no SQLite database yet at {path}: the first `zqbo serve` creates it, with its key "
                f"beside it ({path.name}.key) unless ZQBO_ENCRYPTION_KEY is set",
            )
        return Finding("store", False, f"no SQLite database at {path}, and {path.parent} is not writable")
    if not settings.encryption_keys and not read_key_file(settings.db_path):
        return Finding(
            "store",
            False,
            f"{path} is there but its key is not: set ZQBO_ENCRYPTION_KEY, or put {path.name}.key back "
            "beside it (without it the stored tokens cannot be read)",
        )
    return None


# Intuit ---------------------------------------------------------------------------------------------
def intuit_discovery(environment: str) -> Finding:
    """A fresh GET of the OpenID discovery document (not this process's cached copy), and the keys
    zqbo reads from it."""
    url = discovery_url(environment)
    where = f"the discovery document at {url}"
    try:
        resp = requests.get(url, timeout=DEFAULT_TIMEOUT, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        return Finding("intuit", False, f"{where} cannot be fetched ({type(exc).__name__})")
    if resp.status_code != 200:
        return Finding("intuit", False, f"{where} answered HTTP {resp.status_code}")
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return Finding("intuit", False, f"{where} is not a JSON object")
    missing = [key for key in DISCOVERY_KEYS if not doc.get(key)]
    if missing:
        return Finding("intuit", False, f"{where} lacks {', '.join(missing)} (check QBO_ENVIRONMENT)")
    return Finding("intuit", True, f"{where} has every endpoint zqbo uses")


# QuickBooks companies ---------------------------------------------------------------------------------
def company_checks(services: Services, realms: Sequence[str]) -> list[Finding]:
    realms = list(realms) or services.store.realm_ids()
    if not realms:
        return [Finding("companies", True, "none connected yet (/zqbo connect in Slack)", note=True)]
    return [company_check(services, realm) for realm in realms]


def company_check(services: Services, realm_id: str) -> Finding:
    """companyinfo and a one-day CDC read, as a scheduled check makes them, writing nothing."""
    name = f"company {realm_id}"
    conn = services.store.get_connection(realm_id)
    if conn is None:
        return Finding(name, False, "no connected company has this realm id")
    who = f"{conn.company_name or '(name not known yet)'}, authorised as {conn.identity.email or '(unknown)'}"
    reconnect = f"reconnect it (/zqbo reconnect {realm_id})"
    if conn.status is not ConnectionStatus.CONNECTED:
        reason = conn.status_reason or conn.status.value
        return Finding(name, False, f"{who}: {conn.status.value} ({reason}); {reconnect}")
    if conn.sealed_tokens is not None:
        return Finding(
            name,
            False,
            f"{who}: its tokens cannot be decrypted with ZQBO_ENCRYPTION_KEY (put the old key back "
            "after the new one), or reconnect it",
        )
    since = (services.clock.now() - CDC_WINDOW).isoformat(timespec="seconds")
    entities = ",".join(services.settings.entities)
    step = "companyinfo"
    try:
        info = services.qbo.call(
            realm_id, step, lambda qb: CompanyInfo.get(realm_id, qb=qb), known=conn, refresh_on_401=False
        )
        step = "cdc"
        body = services.qbo.call(
            realm_id, step, lambda qb: qb.change_data_capture(entities, since), refresh_on_401=False
        )
    except ConnectionLost as exc:
        return Finding(name, False, f"{who}: {exc.reason}; {reconnect}")
    except AccessDenied:
        return Finding(
            name,
            False,
            f"{who}: QuickBooks refused zqbo's access token for {step} (HTTP 401): the app was "
            f"disconnected in QuickBooks or the grant revoked; {reconnect}",
        )
    except TransientError as exc:
        return Finding(
            name,
            False,
            f"{who}: {exc} (transient: QuickBooks is busy or down, nothing to fix here; zqbo retries "
            "by itself; run doctor again later)",
        )
    except RequestRejected as exc:
        hint = "; " + reconnect if exc.status in (401, 403, 404) else ""
        return Finding(name, False, f"{who}: {exc}{hint}")
    except QBOError as exc:  # Intuit refused our client id/secret, or the company vanished
        return Finding(name, False, f"{who}: {exc}")
    except Exception as exc:
        return Finding(name, False, f"{who}: {step} failed ({type(exc).__name__})")
    named = getattr(info, "CompanyName", "") or conn.company_name or "(no name)"
    return Finding(
        name,
        True,
        f"{named}, authorised as {conn.identity.email or '(unknown)'}: companyinfo and CDC answer "
        f"({_changes(body)}){_rotated(services, conn)}",
    )


def _changes(body: Any) -> str:
    cdc = (body.get("CDCResponse") or [{}]) if isinstance(body, dict) else [{}]
    responses = cdc[0].get("QueryResponse") or [] if isinstance(cdc[0], dict) else []
    count = sum(len(v) for r in responses if isinstance(r, dict) for v in r.values() if isinstance(v, list))
    return f"{count} change{'' if count == 1 else 's'} in the last day"


def _rotated(services: Services, before: Connection) -> str:
    after = services.store.get_connection(before.realm_id)
    if after is not None and after.token_generation != before.token_generation:
        return "; its access token was due: refreshed, and the new refresh token stored"
    return ""
