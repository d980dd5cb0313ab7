"""Slack workspaces: whose data is whose, each one's settings and bot token.

One workspace (SLACK_BOT_TOKEN): everything belongs to the one scope "", configured by the
environment, as zqbo always was. Many workspaces (installed with "Add to Slack"): every company
(QBO realm) belongs to the workspace that connected it (`Connection.team_id`), every setting is
the workspace's own (stored; the environment's values are defaults until it changes them), and
each workspace is answered with its own bot token. Code that acts for a workspace asks this
module which companies are its — nothing else decides that.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient

from bot.audit.markers import MarkerError, parse_markers
from bot.config import Settings, parse_interval
from bot.models import Connection
from bot.store.base import Store

log = logging.getLogger(__name__)

SETTINGS_KIND = "workspace"  # documents keyed by scope: the settings a workspace chose
SETTABLE = ("alert_channel", "dedicated_email", "admins", "markers", "check_interval")
CLIENT_CACHE_SECONDS = 60.0
ORG_TEAMS_CACHE_SECONDS = 300.0  # an org-wide install's list of workspaces (auth.teams.list)
LEGACY_MARKERS = ("config", "markers")  # where one workspace's markers were kept before
SETTINGS_CACHE_SECONDS = 2.0  # another process's settings change shows within this (own at once)
COMPANY_KIND = "company"  # documents keyed by realm id: the settings one company chose
COMPANY_SETTABLE = ("alert_channel", "display_name", "admins")
MAX_DISPLAY_NAME = 80


@dataclass(frozen=True)
class Workspace:
    """One workspace's view of zqbo's settings: the environment's, overridden by its own."""

    scope: str  # "" with one workspace; the Slack team (or org) id with many
    alert_channel: str = ""
    dedicated_email: str = ""
    admins: tuple[str, ...] = ()
    markers: str = ""
    check_interval: timedelta = timedelta(minutes=15)
    dedicated_user_id: str = ""  # pinned for every company (ZQBO_DEDICATED_USER_ID)
    integration_name: str = "Zomentum Payments"  # ZQBO_INTEGRATION_NAME: what the settings above describe
    scheduler_mode: str = "worker"  # who schedules checks: ZQBO_SCHEDULER (inline, worker or off)
    changed: dict[str, Any] = field(default_factory=dict)  # what the workspace set itself

    @property
    def configured(self) -> bool:
        """Ready to alert: it has somewhere to post."""
        return bool(self.alert_channel)


@dataclass(frozen=True)
class Company:
    """One company's view of its settings: its own where it chose them, else its workspace's
    (the display name falls back to the name QuickBooks gives, then the realm id). `source` says
    where each came from: "company", "workspace" or (display name) "quickbooks" / "realm"."""

    realm_id: str
    scope: str
    alert_channel: str
    display_name: str
    admins: tuple[str, ...]
    own_admins: tuple[str, ...] = ()  # the company's own list (empty: the workspace's apply)
    source: dict[str, str] = field(default_factory=dict)


# Slack Connect: what a person of another organisation is told when they try more than a look.
READ_ONLY = (
    "This channel is shared with another organisation: you can see zqbo's messages, but only "
    "members of the workspace that installed zqbo can act on them."
)
READ_ONLY_COMMAND = (
    "This channel is shared with another organisation: `/zqbo status` and `/zqbo help` work for "
    "you here, but only members of the workspace that installed zqbo can run `/zqbo {name}`."
)


def scope_for(enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None) -> str:
    """Whose data a request or an installation is: the org's for an org-wide install (every
    workspace of the org shares it), else the workspace's."""
    if is_enterprise_install and enterprise_id:
        return str(enterprise_id)
    return str(team_id or "")


class Workspaces:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        default_client: WebClient,
        client_for_token: Callable[[str], WebClient],
        bot_token: Callable[[str], str | None] | None = None,
        installed: Callable[[str], AbstractContextManager[bool]] | None = None,
        install_name: Callable[[str], str | None] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._default = default_client
        self._client_for_token = client_for_token
        self._bot_token = bot_token  # scope -> the installation's bot token (many workspaces)
        # scope -> held while its installation cannot change, yielding whether it is installed
        self._installed = installed
        self._install_name = install_name  # scope -> the workspace's (or org's) name at install
        self._names: dict[str, str] = {}
        self._clients: dict[str, tuple[float, str, WebClient]] = {}
        self._settings_cache: dict[str, tuple[float, Workspace]] = {}
        self._company_cache: dict[str, tuple[float, dict[str, Any]]] = {}  # realm -> its own settings
        self._org_teams: dict[str, tuple[float, frozenset[str]]] = {}
        self._org_refreshing: set[str] = set()  # orgs whose list is being asked afresh
        self._lock = threading.Lock()

    @property
    def multi(self) -> bool:
        return self._settings.multi_workspace

    def scope(self, team_id: str) -> str:
        """The scope a Slack request acts in: its workspace's, or the one scope ""."""
        return team_id if self.multi else ""

    def scope_of(self, context: Any) -> str:
        """The scope of a Bolt request (its `context`): the org for an org-wide install, else the
        workspace — "" with one workspace."""
        if not self.multi:
            return ""
        installed = context.get("authorize_result")  # whose installation answers, when Bolt found one
        if installed is not None and (installed.team_id or installed.enterprise_id):
            return scope_for(installed.enterprise_id, installed.team_id, not installed.team_id)
        return scope_for(
            context.get("enterprise_id"), context.get("team_id"), context.get("is_enterprise_install")
        )

    def outsider(self, user_team: Any, context: Any) -> bool:
        """Whether a person belongs to another organisation than the installation that answers
        (Slack Connect): not its workspace (nor, on Grid, its org) for a workspace install; not one
        of the org's workspaces for an org-wide install. `user_team` is the person's team as the
        payload says it (a button's `user.team_id`, a command's `team_id`); Grid may report the
        org's id there. Unknown (no team given) is not an outsider: there is nothing to compare."""
        if not isinstance(user_team, str) or not user_team:
            return False
        # With many workspaces, the installation Bolt answers with (StoreAuthorize's result); with
        # one, Bolt asked auth.test once and the request's own team is the one to compare with.
        installed = context.get("authorize_result") if self.multi else None
        team_id = installed.team_id if installed is not None else context.get("team_id")
        enterprise_id = installed.enterprise_id if installed is not None else context.get("enterprise_id")
        if user_team in (team_id, enterprise_id):
            return False
        if enterprise_id and not team_id:  # an org-wide install: any workspace it was approved for
            return user_team not in self.org_teams(str(enterprise_id))
        return True

    def org_teams(self, enterprise_id: str) -> frozenset[str]:
        """The workspaces an org-wide install was approved for, as Slack lists them
        (`auth.teams.list`). This is asked before an ack: a list older than a few minutes is still
        answered at once and asked afresh in the background; only with no list yet does the
        request wait for Slack. The last list is kept while Slack cannot answer, and with none
        yet nobody is taken for a member (fail closed)."""
        with self._lock:
            hit = self._org_teams.get(enterprise_id)
            stale = hit is not None and time.monotonic() - hit[0] >= ORG_TEAMS_CACHE_SECONDS
            if stale and enterprise_id not in self._org_refreshing:
                self._org_refreshing.add(enterprise_id)
                threading.Thread(
                    target=self._refresh_org_teams, args=(enterprise_id,), name="zqbo-org-teams", daemon=True
                ).start()
        return hit[1] if hit else self._fetch_org_teams(enterprise_id)

    def _refresh_org_teams(self, enterprise_id: str) -> None:
        try:
            self._fetch_org_teams(enterprise_id)
        finally:
            with self._lock:
                self._org_refreshing.discard(enterprise_id)

    def _fetch_org_teams(self, enterprise_id: str) -> frozenset[str]:
        asked = time.monotonic()
        try:
            client, teams, cursor = self.client(enterprise_id), set(), None
            for _ in range(20):  # 20 pages of 1000 workspaces: more than any org has
                page = client.auth_teams_list(limit=1000, cursor=cursor)
                teams.update(str(t.get("id")) for t in page.get("teams") or [] if t.get("id"))
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except Exception as exc:  # Slack down, or the org uninstalled: keep what we knew
            log.warning("auth.teams.list failed for %s (%s)", enterprise_id, type(exc).__name__)
            with self._lock:
                hit = self._org_teams.get(enterprise_id)
            return hit[1] if hit else frozenset()
        found = frozenset(teams)
        with self._lock:
            self._org_teams[enterprise_id] = (asked, found)
        return found

    def team_filter(self, scope: str) -> str | None:
        """What to pass the store to see exactly this scope's companies (None: all of them)."""
        return scope if self.multi else None

    # settings ------------------------------------------------------------------------------------
    def defaults(self, scope: str) -> Workspace:
        s = self._settings
        return Workspace(
            scope=scope,
            alert_channel=s.alert_channel,
            dedicated_email=s.dedicated_email,
            admins=tuple(s.admins),
            markers=s.markers,
            check_interval=s.check_interval,
            # QBO user ids differ from one company to the next: with many workspaces there is no
            # one id to default to (each company pins or learns its own)
            dedicated_user_id="" if self.multi else s.dedicated_user_id,
            integration_name=s.integration_name,
            scheduler_mode=s.scheduler_mode,
        )

    def get(self, scope: str, fresh: bool = False) -> Workspace:
        """A workspace's settings; read at most every couple of seconds unless `fresh` (what a
        person is shown as its settings is always read from the store)."""
        now = time.monotonic()
        with self._lock:
            hit = self._settings_cache.get(scope)
        if hit and not fresh and now - hit[0] < SETTINGS_CACHE_SECONDS:
            return hit[1]
        doc = self._store.get_doc(SETTINGS_KIND, scope) or {}
        if not scope and "markers" not in doc:  # set with `/zqbo config markers` before workspaces
            legacy = self._store.get_doc(*LEGACY_MARKERS)
            if legacy and legacy.get("rules"):
                doc = {**doc, "markers": legacy["rules"]}
        workspace = self._apply(self.defaults(scope), doc)
        with self._lock:
            self._settings_cache[scope] = (now, workspace)
        return workspace

    @staticmethod
    def _apply(base: Workspace, doc: dict[str, Any]) -> Workspace:
        changes: dict[str, Any] = {}
        for name in SETTABLE:
            if name not in doc:
                continue
            value = doc[name]
            if name == "admins":
                value = tuple(value)
            elif name == "check_interval":
                value = parse_interval(value)
            changes[name] = value
        return replace(base, **changes, changed={k: doc[k] for k in SETTABLE if k in doc})

    def update(self, scope: str, by: str, **changes: Any) -> Workspace:
        """Save a workspace's own values (already validated by the caller). With many workspaces
        only while it is installed, under its install lock: a save racing its uninstall never
        writes its settings back after the clean-up."""
        if self.multi and self._installed is not None:
            with self._installed(scope) as still:
                if not still:
                    raise NotInstalled(scope)
                return self._update(scope, by, changes)
        return self._update(scope, by, changes)

    def _update(self, scope: str, by: str, changes: dict[str, Any]) -> Workspace:
        doc = dict(self._store.get_doc(SETTINGS_KIND, scope) or {})
        for name, value in changes.items():
            if name not in SETTABLE:
                raise ValueError(f"{name} is not a workspace setting")
            if name == "check_interval" and isinstance(value, timedelta):
                value = f"{int(value.total_seconds())}s"
            if name == "admins":
                value = list(value)
            doc[name] = value
        doc["changed_by"] = by
        self._store.put_doc(SETTINGS_KIND, scope, doc)
        with self._lock:
            self._settings_cache.pop(scope, None)
        return self.get(scope)

    # one company's settings -----------------------------------------------------------------
    def company(self, realm_id: str, conn: Connection | None = None) -> Company:
        """A company's alert channel, display name and admins, each its own or its workspace's.
        `conn` spares the read of the company's connection when the caller has it."""
        conn = conn if conn is not None else self._store.get_connection(realm_id)
        scope = (conn.team_id if self.multi else "") if conn is not None else ""
        workspace = self.get(scope)
        doc = self._company_doc(realm_id)
        own_admins = tuple(doc.get("admins") or ())
        qbo_name = conn.company_name if conn is not None else ""
        name = str(doc.get("display_name") or "")
        return Company(
            realm_id=realm_id,
            scope=scope,
            alert_channel=str(doc.get("alert_channel") or "") or workspace.alert_channel,
            display_name=name or qbo_name or realm_id,
            admins=own_admins or workspace.admins,
            own_admins=own_admins,
            source={
                "alert_channel": "company" if doc.get("alert_channel") else "workspace",
                "admins": "company" if own_admins else "workspace",
                "display_name": "company" if name else ("quickbooks" if qbo_name else "realm"),
            },
        )

    def _company_doc(self, realm_id: str) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            hit = self._company_cache.get(realm_id)
        if hit and now - hit[0] < SETTINGS_CACHE_SECONDS:
            return hit[1]
        doc = self._store.get_doc(COMPANY_KIND, realm_id) or {}
        with self._lock:
            self._company_cache[realm_id] = (now, doc)
        return doc

    def update_company(self, realm_id: str, by: str, **changes: Any) -> Company:
        """Save a company's own values (validated by the caller; an empty value falls back to the
        workspace's again). Only the workspace that owns the company calls this (the caller has
        resolved the company among its own); with many workspaces, only while it is installed."""
        scope = self.owner(realm_id)
        if scope is None:
            raise NotInstalled("")
        if self.multi and self._installed is not None:
            with self._installed(scope) as still:
                if not still:
                    raise NotInstalled(scope)
                return self._update_company(realm_id, by, changes)
        return self._update_company(realm_id, by, changes)

    def _update_company(self, realm_id: str, by: str, changes: dict[str, Any]) -> Company:
        doc = dict(self._store.get_doc(COMPANY_KIND, realm_id) or {})
        for name, value in changes.items():
            if name not in COMPANY_SETTABLE:
                raise ValueError(f"{name} is not a company setting")
            if value:
                doc[name] = list(value) if name == "admins" else value
            else:
                doc.pop(name, None)
        doc["changed_by"] = by
        self._store.put_doc(COMPANY_KIND, realm_id, doc)
        with self._lock:
            self._company_cache.pop(realm_id, None)
        return self.company(realm_id)

    # whose is it ------------------------------------------------------------------------------
    def owner(self, realm_id: str) -> str | None:
        """The scope a company belongs to; None when no workspace has connected it."""
        conn = self._store.get_connection(realm_id)
        if conn is None:
            return None
        return conn.team_id if self.multi else ""

    def owns(self, scope: str, realm_id: str) -> bool:
        return bool(realm_id) and self.owner(realm_id) == scope

    def for_realm(self, realm_id: str) -> Workspace:
        return self.get(self.owner(realm_id) or "") if self.multi else self.get("")

    def for_connection(self, conn: Connection) -> Workspace:
        """The workspace of a connection in hand (no store read for whose it is)."""
        return self.get(conn.team_id if self.multi else "")

    def realms(self, scope: str) -> list[str]:
        return self._store.realm_ids(self.team_filter(scope))

    # Slack ------------------------------------------------------------------------------------
    def client(self, scope: str) -> WebClient:
        """A Web API client with the workspace's own bot token."""
        if not self.multi:
            return self._default
        now = time.monotonic()
        with self._lock:
            hit = self._clients.get(scope)
        if hit and now - hit[0] < CLIENT_CACHE_SECONDS:
            return hit[2]
        token = self._bot_token(scope) if self._bot_token else None
        if not token:
            raise NotInstalled(scope)
        if hit and hit[1] == token:
            client = hit[2]
        else:
            client = self._client_for_token(token)
        with self._lock:
            self._clients[scope] = (now, token, client)
        return client

    def display_name(self, scope: str) -> str:
        """The Slack workspace's (or organisation's) name, for pages outside Slack: from its
        installation, or (one workspace) from auth.test; its id when Slack does not say."""
        with self._lock:
            hit = self._names.get(scope)
        if hit:
            return hit
        name = ""
        try:
            if self.multi:
                name = (self._install_name(scope) if self._install_name else None) or ""
            else:
                name = str(self._default.auth_test().get("team") or "")
        except Exception as exc:  # a page still shows, naming the workspace by its id
            log.warning("could not read the name of Slack workspace %s: %s", scope, type(exc).__name__)
            return scope or "your Slack workspace"
        name = name[:100] or scope or "your Slack workspace"
        with self._lock:
            self._names[scope] = name
        return name

    def client_for(self, token: str) -> WebClient:
        """A client with a given bot token (one just issued by an install)."""
        return self._client_for_token(token)

    def forget(self, scope: str) -> None:
        """Drop what this process keeps of a workspace (its client, its settings)."""
        with self._lock:
            self._clients.pop(scope, None)
            self._settings_cache.pop(scope, None)
            self._org_teams.pop(scope, None)
            self._names.pop(scope, None)
            self._company_cache.clear()  # a few entries at most; keyed by company, not workspace


class NotInstalled(Exception):
    """The workspace has no installation (never installed, or uninstalled)."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"zqbo is not installed in workspace {scope}")
        self.scope = scope


# What a workspace may type for each setting (from `/zqbo config …` or the Settings modal) ------
CHANNEL = re.compile(r"<#([CG][A-Z0-9]{2,20})(?:\|[^>]*)?>|([CG][A-Z0-9]{2,20})")
USER = re.compile(r"<@([UW][A-Z0-9]{2,20})(?:\|[^>]*)?>|([UW][A-Z0-9]{2,20})")
EMAIL = re.compile(r"[^@\s<>]{1,64}@[^@\s<>.]+(\.[^@\s<>.]+)+")
MAX_ADMINS = 50


# Slack sends `#name` / `@name` as typed unless the command escapes them: then no id comes with it.
def not_escaped(typed: str, what: str, picker: str) -> str:
    return (
        f"Slack sent `{typed[:80]}` as plain text, so zqbo cannot tell which {what} it is. Turn on "
        "“Escape channels, users, and links” for /zqbo in the Slack app's settings (Slash Commands), "
        f"or use the Settings form (App Home → Settings), which has {picker}."
    )


class SettingError(ValueError):
    """A value a workspace typed that zqbo will not keep; the message says what to type."""


def parse_setting(name: str, text: str) -> Any:
    """The stored value of a setting from what a person typed, or SettingError saying why not."""
    text = text.strip()
    if name == "alert_channel":
        match = CHANNEL.fullmatch(text)
        if not match and text.startswith("#"):
            raise SettingError(not_escaped(text, "channel", "a channel picker"))
        if not match:
            raise SettingError("Name a channel: `/zqbo config channel #qbo-alerts` (or its id, C…).")
        return match.group(1) or match.group(2)
    if name == "dedicated_email":
        if len(text) > 254 or not EMAIL.fullmatch(text):
            raise SettingError("Give the dedicated integration user's email address (name@company.com).")
        return text.lower()
    if name == "admins":
        words = text.replace(",", " ").split()
        ids = []
        for word in words:
            match = USER.fullmatch(word)
            if not match and word.startswith("@"):
                raise SettingError(not_escaped(word, "person", "a people picker"))
            if not match:
                raise SettingError("Name admins as Slack mentions: `/zqbo config admins @ana @olu`.")
            ids.append(match.group(1) or match.group(2))
        if len(ids) > MAX_ADMINS:
            raise SettingError(f"At most {MAX_ADMINS} admins.")
        return list(dict.fromkeys(ids))
    if name == "check_interval":
        try:
            return parse_interval(text)
        except ValueError as exc:
            raise SettingError(f"Not saved: {exc}.") from None
    if name == "markers":
        try:
            parse_markers(text)
        except MarkerError as exc:
            raise SettingError(f"Not saved: {exc}") from None
        return text
    if name == "display_name":
        name_text = " ".join(text.split())
        if len(name_text) > MAX_DISPLAY_NAME or any(ord(c) < 32 for c in name_text):
            raise SettingError(f"A display name is at most {MAX_DISPLAY_NAME} characters on one line.")
        return name_text
    raise SettingError(f"{name} is not a setting")
