"""Sign in with Slack (OpenID Connect), emulated: state and rules, no HTTP.

The browser page `/openid/connect/authorize` (scope must include `openid`; `redirect_uri` must be
one of the app's Redirect URLs when any are set) gives a code bound to the client, the
redirect_uri, the user who signed in and the nonce; `openid.connect.token` spends it once within
ten minutes and answers `{ok, access_token (xoxp-…), token_type, id_token}` — the id_token an RS256
JWT whose keys are served at `/openid/connect/keys`; `openid.connect.userInfo` answers the
user's claims for that access token. Shapes: tests/conformance/slack/web_api/openid.connect.*.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.emulator.slack_tenancy import CODE_LIFETIME, Team

if TYPE_CHECKING:
    from bot.emulator.slack import SlackUser

ISSUER = "https://slack.com"
KEY_ID = "emu-oidc-1"
TOKEN_LIFETIME = timedelta(hours=12)


@dataclass
class SignInCode:
    code: str
    client_id: str
    redirect_uri: str
    user_id: str
    team_id: str
    nonce: str
    issued_at: datetime
    state: str = ""  # the app's state it was sent back with (tests look for it in logs)
    used: bool = False


class OpenID:
    def __init__(self) -> None:
        self.redirect_urls: list[str] = []  # the app's Redirect URLs (empty: any is accepted)
        self.codes: dict[str, SignInCode] = {}
        self.tokens: dict[str, tuple[str, str, datetime]] = {}  # xoxp -> (user, team, issued)
        self._key: rsa.RSAPrivateKey | None = None

    def redirect_ok(self, redirect_uri: str) -> bool:
        return bool(redirect_uri) and (not self.redirect_urls or redirect_uri in self.redirect_urls)

    def new_code(
        self,
        client_id: str,
        redirect_uri: str,
        user_id: str,
        team_id: str,
        nonce: str,
        now: datetime,
        state: str,
    ) -> str:
        code = f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**13)}.{secrets.token_hex(32)}"
        self.codes[code] = SignInCode(code, client_id, redirect_uri, user_id, team_id, nonce, now, state)
        return code

    def exchange(
        self, client_id: str, code: str, redirect_uri: str, now: datetime
    ) -> tuple[SignInCode | None, str | None]:
        found = self.codes.get(code)
        if found is None or found.used or now - found.issued_at > CODE_LIFETIME:
            return None, "invalid_code"
        if found.client_id != client_id:
            return None, "invalid_client_id"
        if redirect_uri != found.redirect_uri:
            return None, "bad_redirect_uri"
        found.used = True
        return found, None

    def token_answer(self, found: SignInCode, claims: dict[str, Any], now: datetime) -> dict[str, Any]:
        access = f"xoxp-{secrets.randbelow(10**12)}-{secrets.token_hex(16)}"
        self.tokens[access] = (found.user_id, found.team_id, now)
        payload = {
            "iss": ISSUER,
            "sub": found.user_id,
            "aud": found.client_id,
            "exp": int((now + timedelta(hours=1)).timestamp()),
            "iat": int(now.timestamp()),
            "auth_time": int(now.timestamp()),
            "nonce": found.nonce,
            "at_hash": _at_hash(access),
            **{k: v for k, v in claims.items() if k not in ("ok", "sub")},
        }
        if not found.nonce:
            del payload["nonce"]
        id_token = jwt.encode(payload, self.key(), algorithm="RS256", headers={"kid": KEY_ID})
        return {"ok": True, "access_token": access, "token_type": "Bearer", "id_token": id_token}

    def revoke(self, token: str) -> bool:
        """auth.revoke with a Sign in with Slack token: it stops working at once."""
        return self.tokens.pop(token, None) is not None

    def who(self, token: str, now: datetime) -> tuple[str, str] | None:
        found = self.tokens.get(token)
        if found is None or now - found[2] > TOKEN_LIFETIME:
            return None
        return found[0], found[1]

    def key(self) -> rsa.RSAPrivateKey:
        if self._key is None:  # made on first use: most emulators never sign anyone in
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._key

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key().public_key()))
        return {"keys": [{**public, "kid": KEY_ID, "alg": "RS256", "use": "sig"}]}


def user_claims(user: SlackUser, team: Team, now: datetime) -> dict[str, Any]:
    """openid.connect.userInfo's answer for a user (docs.slack.dev's example, every key)."""
    given, _, family = user.real_name.partition(" ")
    avatar = hashlib.md5(user.id.encode(), usedforsecurity=False).hexdigest()
    picture = f"https://secure.gravatar.com/avatar/{avatar}.jpg?s=512"
    claims: dict[str, Any] = {
        "ok": True,
        "sub": user.id,
        "https://slack.com/user_id": user.id,
        "https://slack.com/team_id": team.id,
        "email": user.email,
        "email_verified": True,
        "date_email_verified": int(now.timestamp()) - 86_400,
        "name": user.real_name,
        "picture": picture,
        "given_name": given,
        "family_name": family,
        "locale": "en-US",
        "https://slack.com/team_name": team.name,
        "https://slack.com/team_domain": team.domain,
    }
    for size in (24, 32, 48, 72, 192, 512):
        claims[f"https://slack.com/user_image_{size}"] = picture.replace("s=512", f"s={size}")
    for size in (34, 44, 68, 88, 102, 132, 230):
        claims[f"https://slack.com/team_image_{size}"] = f"https://a.slack-edge.com/team_{team.id}_{size}.png"
    claims["https://slack.com/team_image_default"] = True
    if team.enterprise_id:
        claims["https://slack.com/enterprise_id"] = team.enterprise_id
        claims["https://slack.com/enterprise_name"] = team.enterprise_name or team.enterprise_id
    return claims


def _at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()[:16]
    return jwt.utils.base64url_encode(digest).decode()
