"""Records as both backends keep them: JSON text, tokens sealed by the cipher."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from bot.clock import iso, parse_iso
from bot.models import CheckResult, Connection, ConnectionStatus, Identity, OAuthState
from bot.redact import remember
from bot.store.crypto import TokenCipher


def _dt(value: Any) -> datetime:
    parsed = parse_iso(value)
    if parsed is None:
        raise ValueError("missing timestamp in stored record")
    return parsed


UNDECRYPTABLE = (
    "its tokens cannot be decrypted with ZQBO_ENCRYPTION_KEY (was the key changed without keeping "
    "the old one? add it back after the new key, comma-separated, or reconnect)"
)


def dump_connection(conn: Connection, cipher: TokenCipher) -> str:
    remember(conn.access_token, conn.refresh_token)
    if conn.sealed_tokens and not conn.access_token and not conn.refresh_token:
        access, refresh = conn.sealed_tokens  # still sealed under a key we do not have: keep them
    else:
        access, refresh = cipher.encrypt(conn.access_token), cipher.encrypt(conn.refresh_token)
    return json.dumps(
        {
            "realm_id": conn.realm_id,
            "company_name": conn.company_name,
            "access_token": access,
            "refresh_token": refresh,
            "access_expires_at": iso(conn.access_expires_at),
            "refresh_expires_at": iso(conn.refresh_expires_at),
            "identity": asdict(conn.identity),
            "connected_at": iso(conn.connected_at),
            "connected_by": conn.connected_by,
            "team_id": conn.team_id,
            "status": conn.status.value,
            "status_reason": conn.status_reason,
            "refreshed_at": iso(conn.refreshed_at),
            "token_generation": conn.token_generation,
        }
    )


def load_connection(text: str, cipher: TokenCipher) -> Connection:
    """A record whose tokens cannot be decrypted loads as LOST (with why), never as a crash:
    status still answers, and a reconnect replaces it."""
    raw = json.loads(text)
    sealed = None
    try:
        access, refresh = cipher.decrypt(raw["access_token"]), cipher.decrypt(raw["refresh_token"])
    except ValueError:
        access = refresh = ""
        sealed = (raw["access_token"], raw["refresh_token"])
        raw["status"], raw["status_reason"] = ConnectionStatus.LOST.value, UNDECRYPTABLE
    remember(access, refresh)
    return Connection(
        realm_id=raw["realm_id"],
        company_name=raw["company_name"],
        access_token=access,
        refresh_token=refresh,
        access_expires_at=_dt(raw["access_expires_at"]),
        refresh_expires_at=_dt(raw["refresh_expires_at"]),
        identity=Identity(**raw["identity"]),
        connected_at=_dt(raw["connected_at"]),
        connected_by=raw.get("connected_by", ""),
        team_id=raw.get("team_id", ""),
        status=ConnectionStatus(raw["status"]),
        status_reason=raw.get("status_reason", ""),
        refreshed_at=parse_iso(raw.get("refreshed_at")),
        token_generation=int(raw.get("token_generation", 0)),
        sealed_tokens=sealed,
    )


def dump_state(state: OAuthState) -> str:
    raw = asdict(state)
    raw["created_at"] = iso(state.created_at)
    raw["expires_at"] = iso(state.expires_at)
    return json.dumps(raw)


def load_state(text: str) -> OAuthState:
    raw = json.loads(text)
    raw["created_at"] = _dt(raw["created_at"])
    raw["expires_at"] = _dt(raw["expires_at"])
    return OAuthState(**raw)


def dump_check(result: CheckResult) -> str:
    raw = asdict(result)
    raw["at"] = iso(result.at)
    return json.dumps(raw)


def load_check(text: str) -> CheckResult:
    raw = json.loads(text)
    raw["at"] = _dt(raw["at"])
    return CheckResult(**raw)
