"""Integrations per company: every app that writes into a company's QuickBooks (a payments
integration, a Stripe or Shopify connector, payroll, bill pay), each with its markers and its own
dedicated QBO user — the article's rule, applied to each of them.

A company's integrations are one store document (kind `integrations`, keyed by realm id), in
order: an entry belongs to the FIRST integration whose markers match; an entry matching none is
people's work. A company without that document has exactly one integration, the workspace's own:
named by ZQBO_INTEGRATION_NAME, with the workspace's markers and dedicated email, and its
dedicated user id in the `dedicated_user` document (pinned, learned or confirmed) — which is how a
store written before integrations existed reads, unchanged. That integration keeps following the
workspace's settings (`follows_workspace`) when others are added beside it; the others keep their
markers, email, dedicated user id (pinned or learned) and a pending guided reconnect in the
document itself, so an audit reads one more document whatever their number.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from bot.audit.markers import Marker, MarkerError, parse_markers
from bot.clock import Clock, iso
from bot.store.base import Store

log = logging.getLogger(__name__)

KIND = "integrations"
DEDICATED_KIND = "dedicated_user"  # the workspace integration's dedicated user id, per company
MAX_NAME = 60
MAX_NOTES = 300
MAX_INTEGRATIONS = 20


class IntegrationError(ValueError):
    """Something about an integration zqbo will not keep; the message says what to do."""


def check_name(text: str) -> str:
    """An integration's name: its identity in alerts, history and reports (case-sensitive)."""
    name = " ".join(str(text).split())
    if not name:
        raise IntegrationError("An integration needs a name, e.g. `Stripe`.")
    if len(name) > MAX_NAME:
        raise IntegrationError(f"An integration's name is at most {MAX_NAME} characters.")
    if any(unicodedata.category(ch).startswith("C") or ch in "|`" for ch in name):
        raise IntegrationError("An integration's name may not hold control characters, `|` or backticks.")
    return name


@dataclass(frozen=True)
class Integration:
    name: str
    markers: str  # rules (bot/audit/markers.py)
    dedicated_email: str = ""
    dedicated_user_id: str = ""  # pinned or learned; "" while unknown
    dedicated: dict[str, Any] = field(default_factory=dict)  # where the id came from
    notes: str = ""
    follows_workspace: bool = False  # the workspace's own integration (ZQBO_* settings)
    learning: dict[str, Any] = field(default_factory=dict)  # {"since", "checklist"}: a guided reconnect waits

    @property
    def rules(self) -> list[Marker]:
        try:
            return parse_markers(self.markers)
        except MarkerError:  # checked when saved; a bad stored rule matches nothing, never crashes
            log.warning("integration %r has markers zqbo cannot read", self.name)
            return []

    @property
    def source(self) -> str:
        return str(self.dedicated.get("source", "")) if self.dedicated_user_id else "unknown"


def workspace_dedicated(
    realm_id: str, pinned: str, multi: bool, doc: Mapping[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """The workspace integration's dedicated QBO user id and where it came from. With one
    workspace ZQBO_DEDICATED_USER_ID wins; with many, a company's own id does (QBO user ids differ
    from one company to the next) and the environment's is only a default."""
    if pinned and not multi:
        return pinned, {"source": "pinned (ZQBO_DEDICATED_USER_ID)"}
    value = str((doc or {}).get("id", ""))
    if doc and value and value.strip("0"):  # never "0" (QuickBooks), even if an old zqbo learned it
        return value, dict(doc)
    return (pinned, {"source": "pinned (ZQBO_DEDICATED_USER_ID)"}) if pinned else ("", {})


def company_integrations(
    realm_id: str,
    workspace: Any,
    multi: bool,
    doc: Mapping[str, Any] | None,
    dedicated_doc: Mapping[str, Any] | None,
    learning_doc: Mapping[str, Any] | None = None,
) -> list[Integration]:
    """A company's integrations, in order, from its stored documents (a pure function, so the
    status card reads them from its one overview read). `workspace` is a Workspace or Settings."""
    items = (doc or {}).get("items")
    if not isinstance(items, list):  # written before integrations: the workspace's one
        items = [{"name": workspace.integration_name, "follows_workspace": True}]
    found = []
    for item in items:
        if not isinstance(item, dict) or not item.get("name"):
            continue
        if item.get("follows_workspace"):
            user_id, source = workspace_dedicated(realm_id, workspace.dedicated_user_id, multi, dedicated_doc)
            found.append(
                Integration(
                    name=str(item["name"]),
                    markers=workspace.markers,
                    dedicated_email=workspace.dedicated_email,
                    dedicated_user_id=user_id,
                    dedicated=source,
                    notes=str(item.get("notes", "")),
                    follows_workspace=True,
                    learning=dict(learning_doc or {}),
                )
            )
            continue
        raw = item.get("dedicated")
        dedicated: dict[str, Any] = raw if isinstance(raw, dict) else {}
        found.append(
            Integration(
                name=str(item["name"]),
                markers=str(item.get("markers", "")),
                dedicated_email=str(item.get("dedicated_email", "")),
                dedicated_user_id=str(dedicated.get("id", "")),
                dedicated=dict(dedicated),
                notes=str(item.get("notes", "")),
                learning=dict(item.get("learning") or {}),
            )
        )
    return found


def _item(integration: Integration) -> dict[str, Any]:
    if integration.follows_workspace:
        return {"name": integration.name, "follows_workspace": True, "notes": integration.notes}
    return {
        "name": integration.name,
        "markers": integration.markers,
        "dedicated_email": integration.dedicated_email,
        "notes": integration.notes,
        "dedicated": dict(integration.dedicated),
        "learning": dict(integration.learning),
    }


class IntegrationBook:
    """Reads and changes companies' integrations. Every change is a read-modify-write of one
    document under a per-company lock (an admin's edit and an audit learning an id never lose
    each other's write)."""

    def __init__(self, store: Store, workspaces: Any, clock: Clock) -> None:
        self._store = store
        self._workspaces = workspaces
        self._clock = clock

    # reading -----------------------------------------------------------------------------------
    def of(self, realm_id: str, workspace: Any = None) -> list[Integration]:
        workspace = workspace or self._workspaces.for_realm(realm_id)
        return company_integrations(
            realm_id,
            workspace,
            self._workspaces.multi,
            self._store.get_doc(KIND, realm_id),
            self._store.get_doc(DEDICATED_KIND, realm_id),
            self._store.get_doc("dedicated_learning", realm_id),
        )

    def get(self, realm_id: str, name: str) -> Integration | None:
        return next((i for i in self.of(realm_id) if i.name == name), None)

    # changing ----------------------------------------------------------------------------------
    @contextmanager
    def _editing(self, realm_id: str) -> Iterator[list[Integration]]:
        with self._store.lock(f"integrations:{realm_id}", ttl=30, wait=10) as got:
            if not got:
                raise IntegrationError("Someone else is changing this company's integrations; try again.")
            current = self.of(realm_id)
            yield current
            self._store.put_doc(KIND, realm_id, {"items": [_item(i) for i in current]})

    def add(self, realm_id: str, integration: Integration, by: str) -> Integration:
        with self._editing(realm_id) as current:
            if any(i.name.lower() == integration.name.lower() for i in current):
                raise IntegrationError(
                    f"{integration.name} is already one of this company's integrations: "
                    "`/zqbo integration set` changes it."
                )
            if len(current) >= MAX_INTEGRATIONS:
                raise IntegrationError(f"A company has at most {MAX_INTEGRATIONS} integrations.")
            if integration.dedicated_user_id:
                integration = replace(integration, dedicated=self._pinned(integration.dedicated_user_id, by))
            current.append(integration)
        return integration

    def change(self, realm_id: str, name: str, by: str, **fields: Any) -> Integration:
        """Change markers, dedicated_email, dedicated_user_id (pins it) or notes."""
        with self._editing(realm_id) as current:
            at, found = self._find(current, name)
            if found.follows_workspace and set(fields) & {"markers", "dedicated_email", "dedicated_user_id"}:
                raise IntegrationError(
                    f"{found.name} follows the workspace's settings: change them with "
                    "`/zqbo config markers …`, `/zqbo config email …` or `/zqbo config dedicated-user …`."
                )
            if "dedicated_user_id" in fields:
                fields["dedicated"] = self._pinned(fields["dedicated_user_id"], by)
            current[at] = replace(found, **fields)
            return current[at]

    def remove(self, realm_id: str, name: str) -> Integration:
        with self._editing(realm_id) as current:
            at, found = self._find(current, name)
            del current[at]
            return found

    def rename(self, realm_id: str, name: str, new: str) -> Integration:
        new = check_name(new)
        with self._editing(realm_id) as current:
            at, found = self._find(current, name)
            if any(i.name.lower() == new.lower() and i is not found for i in current):
                raise IntegrationError(f"{new} is already one of this company's integrations.")
            current[at] = replace(found, name=new)
            return current[at]

    def _pinned(self, user_id: str, by: str) -> dict[str, Any]:
        return {"id": user_id, "source": "pinned", "by": by, "at": iso(self._clock.now())}

    @staticmethod
    def _find(current: list[Integration], name: str) -> tuple[int, Integration]:
        for at, integration in enumerate(current):
            if integration.name == name:
                return at, integration
        for at, integration in enumerate(current):  # a person's typing: case does not matter here
            if integration.name.lower() == name.lower():
                return at, integration
        known = ", ".join(i.name for i in current) or "none"
        raise IntegrationError(f"This company has no integration named {name[:MAX_NAME]} (it has: {known}).")

    # the guided reconnect and the audit (an integration other than the workspace's) -------------
    def start_learning(self, realm_id: str, name: str, checklist: str) -> None:
        with self._editing(realm_id) as current:
            at, found = self._find(current, name)
            current[at] = replace(found, learning={"since": iso(self._clock.now()), "checklist": checklist})

    def stop_learning(self, realm_id: str, name: str, learned: dict[str, Any] | None = None) -> None:
        """The first entry came: forget the wait, and keep the id learned from it (if it was)."""
        with self._editing(realm_id) as current:
            at, found = self._find(current, name)
            changes: dict[str, Any] = {"learning": {}}
            if learned:
                changes.update(dedicated_user_id=str(learned["id"]), dedicated=learned)
            current[at] = replace(found, **changes)
