"""App Home's portfolio: every company of a workspace, problems first, a page of 25 at a time,
filtered by state. Read from the status index and the open-alerts index (no connection is read
for ordering); only the shown page's companies are read in full (through the status report)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.alerts import CHECKS_FAILING, OPEN_KIND, fingerprint
from bot.standing import RANK, WRONG_IDENTITY, State
from bot.status import StatusReport, build_status

PAGE_SIZE = 25

# Where a company stands in the portfolio, problems first. The connection's own state comes from
# the status index's rank; "failing" and "alerting" from its open alerts.
LOST, DISCONNECTED, IDENTITY, FAILING, EXPIRING, ALERTING, HEALTHY = range(7)
TIER_OF_RANK = {
    RANK[State.LOST]: LOST,
    RANK[State.DISCONNECTED]: DISCONNECTED,
    RANK[WRONG_IDENTITY]: IDENTITY,
    RANK[State.EXPIRING]: EXPIRING,
    RANK[State.CONNECTED]: HEALTHY,
}
# filter value -> (label, which companies it keeps)
FILTERS: dict[str, tuple[str, frozenset[int]]] = {
    "all": ("Every company", frozenset(range(7))),
    "problems": ("Needs attention", frozenset(range(HEALTHY))),
    "lost": ("Lost or disconnected", frozenset({LOST, DISCONNECTED})),
    "identity": ("Wrong identity", frozenset({IDENTITY})),
    "failing": ("Checks failing", frozenset({FAILING})),
    "expiring": ("Refresh token expiring", frozenset({EXPIRING})),
    "alerting": ("Open alerts", frozenset({ALERTING})),
    "healthy": ("Healthy", frozenset({HEALTHY})),
}


@dataclass(frozen=True)
class PortfolioPage:
    report: StatusReport  # the page's companies, in portfolio order
    filter: str
    page: int  # from 0
    pages: int
    matching: int  # companies the filter keeps
    total: int  # companies of the workspace
    counts: dict[str, int] = field(default_factory=dict)  # filter value -> companies it keeps


def tiers(ranks: dict[str, int], open_alerts: dict[str, list[str]]) -> dict[str, int]:
    """realm -> where it stands: its connection's state, else checks failing, else open alerts."""
    out = {}
    for realm, rank in ranks.items():
        tier = TIER_OF_RANK.get(rank, HEALTHY)
        fps = open_alerts.get(realm) or []
        if tier in (EXPIRING, HEALTHY) and fingerprint(realm, CHECKS_FAILING) in fps:
            tier = FAILING
        elif tier == HEALTHY and fps:
            tier = ALERTING
        out[realm] = tier
    return out


def page(store, config, clock, team: str | None, filter_name: str = "all", number: int = 0) -> PortfolioPage:
    """One page of the portfolio. A filter or page zqbo does not know is the first page of every
    company (a tampered or stale button value changes nothing else)."""
    filter_name = filter_name if filter_name in FILTERS else "all"
    ranks = store.ranks(team)
    open_alerts = {
        realm: list(doc.get("fingerprints") or [])
        for realm, doc in store.list_docs(OPEN_KIND).items()
        if realm in ranks
    }
    where = tiers(ranks, open_alerts)
    ordered = sorted(where, key=lambda realm: (where[realm], realm))
    counts = {name: sum(1 for t in where.values() if t in keep) for name, (_, keep) in FILTERS.items()}
    keep = FILTERS[filter_name][1]
    matching = [realm for realm in ordered if where[realm] in keep]
    pages = max(1, -(-len(matching) // PAGE_SIZE))
    number = number if 0 <= number < pages else 0
    shown = matching[number * PAGE_SIZE : (number + 1) * PAGE_SIZE]
    report = build_status(store, config, clock, team=team, realms=shown) if shown else None
    if report is None:
        report = build_status(store, config, clock, team=team, limit=0)
    else:
        position = {realm: i for i, realm in enumerate(shown)}
        report.companies.sort(key=lambda c: position.get(c.realm_id, len(position)))
    return PortfolioPage(report, filter_name, number, pages, len(matching), len(ranks), counts)
