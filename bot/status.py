"""What `/zqbo status` shows, computed from stored state only (fast: no network)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.clock import Clock, parse_iso
from bot.config import Settings
from bot.integrations import Integration, company_integrations
from bot.models import CheckResult
from bot.standing import (  # noqa: F401 - re-exported for callers
    REFRESH_EXPIRY_WARNING,
    WRONG_IDENTITY,
    State,
    connection_state,
    is_dedicated,
)
from bot.store.base import Store

if TYPE_CHECKING:
    from bot.tenancy.workspaces import Workspace

MAX_COMPANIES_SHOWN = 8


@dataclass(frozen=True)
class CompanyStatus:
    realm_id: str
    company_name: str
    state: State
    reason: str
    identity_email: str
    identity_name: str
    identity_verified: bool
    is_dedicated: bool | None  # None: ZQBO_DEDICATED_EMAIL is not set
    access_expires_at: datetime
    refresh_expires_at: datetime
    connected_at: datetime
    dedicated_user_id: str
    dedicated_user_source: str  # "pinned" | "learned" | "confirmed" | "unknown"
    last_check: CheckResult | None
    last_probe: CheckResult | None
    next_check: datetime | None
    reconnect: GuidedReconnect | None = None  # an active guided reconnect, if one is under way
    dedicated_learned_from: str = ""  # "Payment 123" when the id was learned from an entry
    dedicated_learned_at: datetime | None = None
    open_alerts: int = 0
    integrations: tuple[IntegrationLine, ...] = ()

    @property
    def wrong_identity(self) -> bool:
        """Connected, but not by the dedicated user (or by an address Intuit has not verified)."""
        return self.state in (State.CONNECTED, State.EXPIRING) and (
            self.is_dedicated is False or (self.is_dedicated is True and not self.identity_verified)
        )

    @property
    def label(self) -> str:
        return WRONG_IDENTITY if self.wrong_identity else self.state.value

    @property
    def needs_reconnect(self) -> bool:
        return self.wrong_identity or self.state in (State.LOST, State.DISCONNECTED, State.EXPIRING)


@dataclass(frozen=True)
class IntegrationLine:
    """Where one integration's newest entry was written: under its own dedicated user (✓), under
    someone else (✗ `under`), not comparable yet (its id unknown), or no entries seen yet."""

    name: str
    dedicated_email: str
    state: str  # "ok" | "wrong" | "not_compared" | "unseen"
    under: tuple[
        str, ...
    ] = ()  # who wrote its newest entry: a QBO user id, or "<integration>'s dedicated user"
    at: datetime | None = None


def integration_lines(integrations: list[Integration], seen: Any) -> tuple[IntegrationLine, ...]:
    seen = seen if isinstance(seen, dict) else {}
    owner = {i.dedicated_user_id: i.name for i in integrations if i.dedicated_user_id}
    lines = []
    for integration in integrations:
        last = seen.get(integration.name)
        if not isinstance(last, dict):
            lines.append(IntegrationLine(integration.name, integration.dedicated_email, "unseen"))
            continue
        writer = str(last.get("writer", ""))
        under = (f"{owner[writer]}'s dedicated user" if writer in owner else writer,)
        if not last.get("known"):
            state = "not_compared"
        else:
            state = "ok" if writer == integration.dedicated_user_id else "wrong"
        lines.append(
            IntegrationLine(
                integration.name, integration.dedicated_email, state, under, parse_iso(last.get("at"))
            )
        )
    return tuple(lines)


@dataclass(frozen=True)
class GuidedReconnect:
    started_by: str
    started_at: datetime | None
    step: int  # 1..5, the first step not yet settled


@dataclass(frozen=True)
class StatusReport:
    now: datetime
    dedicated_email: str
    check_interval: timedelta
    scheduler_seen_at: datetime | None
    companies: list[CompanyStatus] = field(default_factory=list)  # the shown ones, problems first
    alert_channel: str = ""
    alert_problem: str = ""  # why alerts cannot be posted, if they cannot
    counts: dict[str, int] = field(default_factory=dict)  # every company, by state label
    marker: str = ""  # the store's change marker this report was built from
    scope: str = ""  # the workspace's, when zqbo serves many ("" with one)
    scheduler_mode: str = "worker"  # who schedules checks (ZQBO_SCHEDULER): inline, worker or off

    @property
    def total(self) -> int:
        return max(sum(self.counts.values()), len(self.companies))

    @property
    def never_connected(self) -> bool:
        return not self.companies and not self.total


def scheduler_heartbeat(store: Store) -> datetime | None:
    doc = store.get_doc("scheduler", "heartbeat")
    return parse_iso(doc.get("at")) if doc else None


def build_status(
    store: Store,
    settings: Settings | Workspace,
    clock: Clock,
    limit: int = MAX_COMPANIES_SHOWN,
    realm: str | None = None,
    team: str | None = None,
    realms: list[str] | None = None,
) -> StatusReport:
    """The status report from stored state only: counts from the status index, details for the
    first `limit` companies (problems first) — of one workspace's companies when `team` is given,
    with that workspace's settings (a `Workspace`). A fixed number of store round trips whatever
    the number of companies; no Intuit or QBO call."""
    now = clock.now()
    scope = getattr(settings, "scope", "")
    view = store.overview(
        realm_doc_kinds=(
            "reconnect",
            "dedicated_user",
            "open_alerts",
            "company",
            "integrations",
            "audit_cursor",
        ),
        global_doc_kinds=("scheduler", "alert_channel"),
        limit=limit,
        realms=[realm] if realm else realms,
        team=team,
    )
    problem = view.doc("alert_channel", f"problem:{scope}" if scope else "problem")
    beat = view.doc("scheduler", "heartbeat")
    heartbeat = parse_iso(beat.get("at")) if beat else None
    companies = []
    for conn in view.connections:
        last_check = view.check(conn.realm_id, "audit")
        next_check = None
        if heartbeat is not None:
            next_check = (last_check.at if last_check else heartbeat) + settings.check_interval
        state = connection_state(conn, now)
        dedicated = view.doc("dedicated_user", conn.realm_id) or {}
        # One workspace: ZQBO_DEDICATED_USER_ID wins. Many: the company's own id does (QBO ids differ
        # from one company to the next) and the environment's is only a default.
        if settings.dedicated_user_id and (not scope or not dedicated):
            dedicated_id, source = settings.dedicated_user_id, "pinned"
        else:
            dedicated_id, source = str(dedicated.get("id", "")), str(dedicated.get("source", "unknown"))
        companies.append(
            CompanyStatus(
                realm_id=conn.realm_id,
                # the name the company's people chose for it, else QuickBooks' (untrusted: escaped
                # where shown)
                company_name=str((view.doc("company", conn.realm_id) or {}).get("display_name") or "")
                or conn.company_name,
                state=state,
                reason=conn.status_reason,
                identity_email=conn.identity.email,
                identity_name=conn.identity.name,
                identity_verified=conn.identity.email_verified,
                is_dedicated=is_dedicated(conn.identity.email, settings.dedicated_email),
                access_expires_at=conn.access_expires_at,
                refresh_expires_at=conn.refresh_expires_at,
                connected_at=conn.connected_at,
                dedicated_user_id=dedicated_id,
                dedicated_user_source=source,
                dedicated_learned_from=str(dedicated.get("entry", "")),
                dedicated_learned_at=parse_iso(dedicated.get("entry_at")),
                open_alerts=len((view.doc("open_alerts", conn.realm_id) or {}).get("fingerprints", [])),
                last_check=last_check,
                last_probe=view.check(conn.realm_id, "probe"),
                reconnect=_guided(view.doc("reconnect", conn.realm_id)),
                next_check=next_check,
                integrations=integration_lines(
                    company_integrations(
                        conn.realm_id,
                        settings,
                        bool(scope),
                        view.doc("integrations", conn.realm_id),
                        dedicated,
                    ),
                    (view.doc("audit_cursor", conn.realm_id) or {}).get("integrations"),
                ),
            )
        )
    return StatusReport(
        now=now,
        dedicated_email=settings.dedicated_email,
        check_interval=settings.check_interval,
        scheduler_seen_at=heartbeat,
        companies=companies,
        alert_channel=settings.alert_channel,
        alert_problem=str(problem.get("problem", "")) if problem else "",
        counts=dict(view.counts),
        marker=view.marker,
        scope=scope,
        scheduler_mode=settings.scheduler_mode,
    )


def _guided(doc: dict | None) -> GuidedReconnect | None:
    from bot.reconnect import Checklist  # reconnect builds on status; import at use

    if not doc or doc.get("status") != "active":
        return None
    checklist = Checklist.from_doc(doc)
    return GuidedReconnect(
        checklist.started_by, parse_iso(checklist.started_at), min(checklist.current_step, 5)
    )
