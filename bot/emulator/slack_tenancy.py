"""Slack's workspaces (teams), Enterprise Grid organisations and the app's installs in them.

Pure state and rules, no HTTP: the emulator calls these under its lock. A bot token is a `Grant`:
it acts as one team, or (an org-wide install) as every team of one enterprise. Installs go through
OAuth v2 codes (single use, ten minutes, bound to the client and the redirect_uri) exchanged by
`oauth.v2.access`; with token rotation on, tokens last 12 hours and come with a refresh token.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

APP_ID = "A0ZQBO"
CODE_LIFETIME = timedelta(minutes=10)
ROTATING_TOKEN_SECONDS = 43_200  # what oauth.v2.access answers as expires_in with token rotation on


@dataclass
class Team:
    id: str
    name: str
    domain: str
    enterprise_id: str | None = None
    enterprise_name: str | None = None

    @property
    def url(self) -> str:
        return f"https://{self.domain}.slack.com/"


@dataclass
class Grant:
    """One bot token and what it may act on (the token's team, or its whole enterprise)."""

    token: str
    team_id: str | None  # None for an org-wide install
    enterprise_id: str | None
    is_enterprise_install: bool
    bot_user_id: str
    bot_id: str
    scope: str
    installer_id: str | None = None
    issued_at: datetime | None = None
    expires_at: datetime | None = None  # rotating tokens only
    refresh_token: str | None = None
    revoked: bool = False
    removed_teams: set[str] = field(default_factory=set)  # an org install's workspaces taken away

    @property
    def install_key(self) -> str:
        """The team id, or the enterprise id of an org-wide install."""
        return str(self.enterprise_id if self.is_enterprise_install else self.team_id)


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str | None  # as sent to /oauth/v2/authorize (None: the app's configured one)
    team_id: str | None
    enterprise_id: str | None
    is_enterprise_install: bool
    user_id: str
    scope: str
    issued_at: datetime
    used: bool = False


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", name.lower().replace(" ", "-")) or "workspace"


class Workspaces:
    """Teams, enterprises, tokens and OAuth codes of one emulated Slack."""

    def __init__(self) -> None:
        self.teams: dict[str, Team] = {}
        self.enterprises: dict[str, str] = {}  # enterprise id -> name
        self.tokens: dict[str, Grant] = {}  # every bot token ever issued, in issue order
        self.codes: dict[str, AuthCode] = {}
        self._refresh_tokens: dict[str, str] = {}  # live refresh token -> the access token it renews
        self._bots: dict[str, tuple[str, str]] = {}  # install key -> (bot user id, bot id)

    # world ---------------------------------------------------------------------------------------
    def add_team(
        self,
        team_id: str,
        name: str,
        domain: str | None = None,
        enterprise_id: str | None = None,
        enterprise_name: str | None = None,
    ) -> Team:
        if enterprise_id is not None:
            enterprise_name = enterprise_name or self.enterprises.get(enterprise_id) or enterprise_id
            self.enterprises[enterprise_id] = enterprise_name
        team = Team(team_id, name, domain or slug(name), enterprise_id, enterprise_name)
        self.teams[team_id] = team
        return team

    def enterprise_url(self, enterprise_id: str) -> str:
        return f"https://{slug(self.enterprises.get(enterprise_id, enterprise_id))}.enterprise.slack.com/"

    def covers(self, grant: Grant, team_id: str | None) -> bool:
        """May this token act in `team_id` (its own team, or any team of its org)?"""
        if grant.is_enterprise_install:
            team = self.teams.get(team_id or "")
            return (
                team is not None
                and team.enterprise_id == grant.enterprise_id
                and team.id not in grant.removed_teams
            )
        return team_id == grant.team_id

    def bot_identity(
        self, key: str, user_id: str | None = None, bot_id: str | None = None
    ) -> tuple[str, str]:
        """The bot user and bot id of the install `key` (a team, or an enterprise): stable across
        reinstalls, as Slack keeps one bot user per workspace."""
        if key not in self._bots:
            self._bots[key] = (user_id or f"U{key[1:]}ZQBO", bot_id or f"B{key[1:]}ZQBO")
        return self._bots[key]

    def reachable(self, team_id: str) -> bool:
        """Is the app installed for `team_id`, on its own or through its org?"""
        return any(not g.revoked and self.covers(g, team_id) for g in self.tokens.values())

    def org_installed(self, team_id: str) -> bool:
        """Is the app reached in `team_id` through an org-wide install (no live install of its own)?"""
        team = self.teams.get(team_id)
        if team is None or team.enterprise_id is None:
            return False
        live = [g for g in self.tokens.values() if not g.revoked]
        if any(g.team_id == team_id and not g.is_enterprise_install for g in live):
            return False
        return any(g.is_enterprise_install and g.enterprise_id == team.enterprise_id for g in live)

    # tokens --------------------------------------------------------------------------------------
    def issue(
        self,
        *,
        team_id: str | None,
        enterprise_id: str | None,
        is_enterprise_install: bool,
        scope: str,
        installer_id: str | None,
        now: datetime,
        rotating: bool = False,
        token: str | None = None,
    ) -> Grant:
        key = str(enterprise_id if is_enterprise_install else team_id)
        bot_user_id, bot_id = self.bot_identity(key)
        prefix = "xoxe.xoxb-" if rotating else "xoxb-"
        grant = Grant(
            token=token or f"{prefix}{key}-{secrets.token_hex(12)}",
            team_id=None if is_enterprise_install else team_id,
            enterprise_id=enterprise_id,
            is_enterprise_install=is_enterprise_install,
            bot_user_id=bot_user_id,
            bot_id=bot_id,
            scope=scope,
            installer_id=installer_id,
            issued_at=now,
            expires_at=now + timedelta(seconds=ROTATING_TOKEN_SECONDS) if rotating else None,
            refresh_token=f"xoxe-1-{secrets.token_hex(24)}" if rotating else None,
        )
        self.tokens[grant.token] = grant
        if grant.refresh_token:
            self._refresh_tokens[grant.refresh_token] = grant.token
        return grant

    def authenticate(self, token: str, now: datetime) -> tuple[Grant | None, str | None]:
        """The grant behind a bearer token, or Slack's error for it."""
        grant = self.tokens.get(token)
        if grant is None:
            return None, "invalid_auth"
        if grant.revoked:
            return None, "token_revoked"
        if grant.expires_at is not None and now >= grant.expires_at:
            return None, "token_expired"
        return grant, None

    def revoke(self, key: str) -> list[Grant]:
        """Revoke every token of a team (or of an org-wide install, by enterprise id)."""
        revoked = [g for g in self.tokens.values() if g.install_key == key and not g.revoked]
        for grant in revoked:
            self.revoke_token(grant)
        return revoked

    def revoke_token(self, grant: Grant) -> None:
        grant.revoked = True
        if grant.refresh_token:
            self._refresh_tokens.pop(grant.refresh_token, None)

    def latest_token(self, team_id: str) -> str:
        """The newest bot token for a team (its own install first, else its org's), or by
        enterprise id the newest org-wide one."""
        grants = list(self.tokens.values())[::-1]
        for grant in grants:
            if grant.install_key == team_id:
                return grant.token
        team = self.teams.get(team_id)
        for grant in grants:
            if team and grant.is_enterprise_install and grant.enterprise_id == team.enterprise_id:
                return grant.token
        raise KeyError(f"no bot token was issued for {team_id}")

    # OAuth v2 --------------------------------------------------------------------------------------
    def new_code(
        self,
        *,
        client_id: str,
        redirect_uri: str | None,
        team_id: str | None,
        enterprise_id: str | None,
        user_id: str,
        scope: str,
        now: datetime,
    ) -> AuthCode:
        code = AuthCode(
            code=f"{int(now.timestamp())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}",
            client_id=client_id,
            redirect_uri=redirect_uri,
            team_id=None if enterprise_id and not team_id else team_id,
            enterprise_id=enterprise_id,
            is_enterprise_install=bool(enterprise_id and not team_id),
            user_id=user_id,
            scope=scope,
            issued_at=now,
        )
        self.codes[code.code] = code
        return code

    def exchange_code(
        self,
        *,
        client_id: str,
        code: str,
        redirect_uri: str | None,
        default_redirect_uri: str | None,
        now: datetime,
        rotating: bool,
    ) -> tuple[Grant | None, str | None]:
        record = self.codes.get(code)
        if (
            record is None
            or record.used
            or record.client_id != client_id
            or now - record.issued_at > CODE_LIFETIME
        ):
            return None, "invalid_code"
        # Slack: redirect_uri must match the one sent to authorize, when one was sent.
        expected = record.redirect_uri
        if expected is not None and redirect_uri != expected:
            return None, "bad_redirect_uri"
        if expected is None and redirect_uri not in (None, "", default_redirect_uri):
            return None, "bad_redirect_uri"
        record.used = True
        enterprise_id = record.enterprise_id
        if not record.is_enterprise_install and record.team_id in self.teams:
            enterprise_id = self.teams[record.team_id].enterprise_id
        grant = self.issue(
            team_id=record.team_id,
            enterprise_id=enterprise_id,
            is_enterprise_install=record.is_enterprise_install,
            scope=record.scope,
            installer_id=record.user_id,
            now=now,
            rotating=rotating,
        )
        return grant, None

    def refresh(self, refresh_token: str, now: datetime) -> tuple[Grant | None, str | None]:
        """A fresh access/refresh pair; the old refresh token stops working, the old access token
        lives until it expires."""
        old_token = self._refresh_tokens.pop(refresh_token, None)
        old = self.tokens.get(old_token or "")
        if old is None or old.revoked:
            return None, "invalid_refresh_token"
        grant = self.issue(
            team_id=old.team_id,
            enterprise_id=old.enterprise_id,
            is_enterprise_install=old.is_enterprise_install,
            scope=old.scope,
            installer_id=old.installer_id,
            now=now,
            rotating=True,
        )
        return grant, None

    def access_answer(self, grant: Grant, *, with_installer: bool = True) -> dict[str, Any]:
        """oauth.v2.access's success body for a grant (API_FACTS.md, "OAuth v2 install")."""
        team = self.teams.get(grant.team_id or "")
        answer: dict[str, Any] = {
            "ok": True,
            "app_id": APP_ID,
            "scope": grant.scope,
            "token_type": "bot",
            "access_token": grant.token,
            "bot_user_id": grant.bot_user_id,
            # An org-wide install is not in any one workspace: Slack answers team null.
            "team": None
            if grant.is_enterprise_install or team is None
            else {"id": team.id, "name": team.name},
            "enterprise": (
                {"id": grant.enterprise_id, "name": self.enterprises.get(grant.enterprise_id, "")}
                if grant.enterprise_id
                else None
            ),
            "is_enterprise_install": grant.is_enterprise_install,
        }
        if with_installer:
            answer["authed_user"] = {"id": grant.installer_id}
        if grant.refresh_token:
            answer["refresh_token"] = grant.refresh_token
            answer["expires_in"] = ROTATING_TOKEN_SECONDS
        return answer
