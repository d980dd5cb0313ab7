"""A workspace removes zqbo (`app_uninstalled`, or its bot token revoked): nothing of it stays.

Its QuickBooks grants are revoked at Intuit (zqbo will never use them again, and a live grant
nobody watches is a risk), then every company, checklist, alert, mute, cursor, check result and
schedule of it is deleted, its settings and its installation too. A reinstall starts clean.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.alerts import ALERT_KIND, MUTE_KIND, OPEN_KIND, problem_key
from bot.audit.scan import CURSOR_KIND, DEDICATED_KIND
from bot.connect import LINKS_KIND
from bot.integrations import KIND as INTEGRATIONS_KIND
from bot.models import ConnectionStatus
from bot.qbo.errors import QBOError
from bot.reconnect import DOC_KIND, LEARNING_KIND, new_key
from bot.reports.digest import SCHEDULE as DIGEST_SCHEDULE
from bot.reports.digest import SETTINGS_KIND as DIGEST_KIND
from bot.services import Services
from bot.store.base import Store
from bot.tenancy.workspaces import COMPANY_KIND, SETTINGS_KIND

log = logging.getLogger(__name__)

REALM_DOC_KINDS = (
    OPEN_KIND,
    DOC_KIND,
    LEARNING_KIND,
    CURSOR_KIND,
    DEDICATED_KIND,
    COMPANY_KIND,
    INTEGRATIONS_KIND,
)


@dataclass
class Forgotten:
    companies: int = 0
    revoked: int = 0
    not_revoked: int = 0  # Intuit did not answer; the grant was deleted here all the same


def forget_workspace(
    services: Services,
    scope: str,
    enterprise_id: str | None,
    team_id: str | None,
    before: float | None = None,
) -> Forgotten:
    """Delete everything of one workspace (or org-wide install, when `scope` is its enterprise)
    that was installed before `before` (the uninstall event's time): a reinstall that came after
    it is left alone. Safe to run twice. Each company is purged while holding the locks its
    audits, refreshes and OAuth callbacks take, so none of them writes it back half-way."""
    if not scope:
        raise ValueError(
            "forget_workspace needs a workspace: with one workspace there is nothing to uninstall"
        )
    if services.installations is None:
        return _forget(services, scope, enterprise_id, team_id, before)
    with services.installations.changing(scope):  # a reinstall waits until this is over
        return _forget(services, scope, enterprise_id, team_id, before)


def _forget(
    services: Services, scope: str, enterprise_id: str | None, team_id: str | None, before: float | None
) -> Forgotten:
    store, done = services.store, Forgotten()
    if before is not None and _installed_since(services, scope, before):
        log.info("workspace %s installed zqbo again after it uninstalled: nothing to forget", scope)
        return done
    ttl = max(3.0, services.settings.queue_heartbeat_seconds)
    for realm in store.realm_ids(scope):
        with (
            store.lock(f"realm-owner:{realm}", ttl=30, wait=30),
            store.lock(f"job:audit:{realm}", ttl=ttl, wait=60, renew=True) as audit_free,
            store.lock(f"refresh:{realm}", ttl=60, wait=30),
        ):
            if not audit_free:
                log.warning("uninstall: realm %s is being audited; deleting it all the same", realm)
            conn = store.get_connection(realm)
            if conn is None or conn.team_id != scope:
                continue
            try:
                if conn.status is not ConnectionStatus.DISCONNECTED:  # a disconnect revoked it already
                    services.intuit.revoke(conn.refresh_token)
                    done.revoked += 1
            except QBOError as exc:
                done.not_revoked += 1
                log.warning(
                    "uninstall: Intuit did not revoke realm %s's grant (%s); deleted here", realm, exc
                )
            store.delete_connection(realm)  # first: from now on nothing treats it as a company
            _purge(store, realm)
            done.companies += 1
    store.delete_doc(DOC_KIND, new_key(scope))
    for key, doc in store.list_docs(LINKS_KIND).items():  # connect links still open: dead now
        if key.split(":", 1)[0] == scope:
            for state in doc.get("states", []):
                store.take_oauth_state(str(state))
            store.delete_doc(LINKS_KIND, key)
    store.delete_doc(SETTINGS_KIND, scope)
    store.delete_doc(DIGEST_KIND, scope)
    store.schedule_remove(DIGEST_SCHEDULE, scope)
    store.delete_doc("alert_channel", problem_key(scope))
    if services.installations is not None:  # exactly this scope's installation
        org = bool(enterprise_id) and scope == enterprise_id
        services.installations.delete_installation(
            enterprise_id=enterprise_id, team_id=None if org else team_id
        )
    services.workspaces.forget(scope)
    services.admins.forget(scope)
    log.info(
        "workspace %s uninstalled zqbo: %d companies deleted (%d grants revoked at Intuit, %d not)",
        scope,
        done.companies,
        done.revoked,
        done.not_revoked,
    )
    return done


def _installed_since(services: Services, scope: str, moment: float) -> bool:
    bot = services.installations.find_scope(scope) if services.installations is not None else None
    return bot is not None and float(bot.installed_at or 0) > moment


def _purge(store: Store, realm: str) -> None:
    """Every document, check, mute and memory of a company."""
    store.drop_docs(f"{ALERT_KIND}:{realm}")
    for kind in REALM_DOC_KINDS:
        store.delete_doc(kind, realm)
    for key in [k for k in store.list_docs(MUTE_KIND) if k.split(":", 1)[0] == realm]:
        store.delete_doc(MUTE_KIND, key)
    for key in [
        k for k in store.list_docs(DOC_KIND) if k.startswith(f"{realm}|")
    ]:  # integrations' checklists
        store.delete_doc(DOC_KIND, key)
    store.delete_checks(realm)
    store.forget_seen(f"alerted:{realm}")  # a later owner of the company is alerted afresh
    store.forget_history(realm)
