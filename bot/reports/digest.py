"""The weekly digest of a workspace: one line per company (state, entries, flagged, trend against
the week before) and one chart, in the workspace's alert channel, at the day and hour an admin
chose — in that admin's time zone (Slack's `users.info` tz), daylight saving included.

Scheduling: the digest is a schedule entry (kind "digest", keyed by the workspace) that the
leader's tick hands to the job engine like any due job (bot/jobs/clock.py); the job claims its
round (the due time) before posting, so each week's digest goes out at most once whatever the
number of workers, and the next one is scheduled when it is handed out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.reports import chart
from bot.standing import RANK, WRONG_IDENTITY, State, connection_state, wrong_identity

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

SETTINGS_KIND = "digest"  # documents keyed by scope: {weekday, hour, tz, by, at}
SCHEDULE = "digest"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CHART_COMPANIES = 15
STATE_ICONS = {
    State.LOST.value: ":red_circle:",
    State.DISCONNECTED.value: ":black_circle:",
    WRONG_IDENTITY: ":warning:",
    State.EXPIRING.value: ":hourglass_flowing_sand:",
    State.CONNECTED.value: ":white_check_mark:",
}


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def next_due(weekday: int, hour: int, tz: str, after: datetime) -> datetime:
    """The first `weekday` at `hour`:00 in `tz` strictly after `after` (UTC): each week's wall
    clock time, so a daylight-saving change moves the instant, never the hour people see."""
    local = after.astimezone(zone(tz))
    candidate = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    candidate += timedelta(days=(weekday - local.weekday()) % 7)
    while candidate <= local:
        candidate += timedelta(days=7)
    # replace() kept the offset of `after`: rebuild the wall time in its own week's offset
    wall = candidate.replace(tzinfo=None).replace(tzinfo=zone(tz))
    return wall.astimezone(UTC)


def parse_when(words: list[str]) -> tuple[int, int]:
    """`monday 9`, `mon 09:00`, `fri 17h` -> (weekday 0-6, hour 0-23); ValueError otherwise."""
    if len(words) != 2:
        raise ValueError
    day = words[0].lower()
    matches = [i for i, name in enumerate(WEEKDAYS) if len(day) >= 3 and name.startswith(day)]
    hour_text = words[1].lower().removesuffix("h").removesuffix(":00")
    if len(matches) != 1 or not hour_text.isascii() or not hour_text.isdigit() or int(hour_text) > 23:
        raise ValueError
    return matches[0], int(hour_text)


def user_tz(services: Services, scope: str, user_id: str) -> str:
    """The person's time zone as Slack knows it (UTC when Slack does not say)."""
    try:
        user = services.workspaces.client(scope).users_info(user=user_id)["user"]
        tz = str(user.get("tz") or "UTC")
    except Exception as exc:
        log.warning("users.info for the digest's time zone failed: %s", type(exc).__name__)
        return "UTC"
    return tz if zone(tz).key == tz else "UTC"


def settings(services: Services, scope: str) -> dict[str, Any] | None:
    return services.store.get_doc(SETTINGS_KIND, scope)


def turn_on(services: Services, scope: str, user_id: str, weekday: int, hour: int) -> dict[str, Any]:
    tz = user_tz(services, scope, user_id)
    now = services.clock.now()
    doc = {"weekday": weekday, "hour": hour, "tz": tz, "by": user_id, "at": now.isoformat()}
    services.store.put_doc(SETTINGS_KIND, scope, doc)
    services.store.schedule_set(SCHEDULE, scope, next_due(weekday, hour, tz, now).timestamp())
    return doc


def turn_off(services: Services, scope: str) -> bool:
    was = settings(services, scope) is not None
    services.store.delete_doc(SETTINGS_KIND, scope)
    services.store.schedule_remove(SCHEDULE, scope)
    return was


def reschedule(services: Services, scope: str, after: datetime) -> None:
    """After a digest was handed out: the next one (none if it was turned off meanwhile)."""
    doc = settings(services, scope)
    if doc is None:
        services.store.schedule_remove(SCHEDULE, scope)
        return
    at = next_due(int(doc["weekday"]), int(doc["hour"]), str(doc["tz"]), after)
    services.store.schedule_set(SCHEDULE, scope, at.timestamp())


@dataclass
class Line:
    realm_id: str
    company: str
    state: str
    seen: int
    flagged: int
    before: int
    rank: int

    @property
    def icon(self) -> str:
        return STATE_ICONS.get(self.state, ":white_circle:")

    @property
    def trend(self) -> str:
        if not self.before:
            return "new activity" if self.seen else ""
        change = (self.seen - self.before) * 100 // self.before
        return "same as the week before" if change == 0 else f"{change:+d}% on the week before"


@dataclass
class Digest:
    scope: str
    since: date
    until: date
    lines: list[Line] = field(default_factory=list)
    more: int = 0
    png: bytes = b""

    @property
    def seen(self) -> int:
        return sum(line.seen for line in self.lines)

    @property
    def flagged(self) -> int:
        return sum(line.flagged for line in self.lines)


def build_digest(services: Services, scope: str, today: date) -> Digest:
    """The 7 full days before `today` and the 7 before them: one history read for every company
    of the workspace, one list of its connections, one chart."""
    since, until = today - timedelta(days=7), today - timedelta(days=1)
    conns = services.store.list_connections(services.workspaces.team_filter(scope))
    rows = services.store.history([c.realm_id for c in conns], since - timedelta(days=7), until)
    this: dict[str, list[int]] = {}
    before: dict[str, int] = {}
    for row in rows:
        if row.day >= since:
            counts = this.setdefault(row.realm_id, [0, 0])
            counts[0] += row.seen
            counts[1] += row.flagged
        else:
            before[row.realm_id] = before.get(row.realm_id, 0) + row.seen
    now = services.clock.now()
    dedicated_email = services.workspaces.get(scope).dedicated_email
    lines = []
    for conn in conns:
        state = connection_state(conn, now)
        label = WRONG_IDENTITY if wrong_identity(conn, dedicated_email, state) else state.value
        seen, flagged = this.get(conn.realm_id, [0, 0])
        rank = RANK.get(label, RANK[State.CONNECTED])  # type: ignore[call-overload]
        lines.append(
            Line(conn.realm_id, conn.company_name, label, seen, flagged, before.get(conn.realm_id, 0), rank)
        )
    lines.sort(key=lambda line: (line.rank, -line.flagged, -line.seen, line.company.casefold()))
    digest = Digest(scope, since, until, lines)
    busiest = sorted(lines, key=lambda line: (-line.flagged, -line.seen))[:CHART_COMPANIES]
    digest.png = chart.portfolio(
        f"Entries per company, {since:%d %b} to {until:%d %b %Y}",
        [line.company for line in busiest],
        [line.seen for line in busiest],
        [line.flagged for line in busiest],
        [line.before for line in busiest],
    )
    return digest


def post_digest(services: Services, scope: str, channel: str = "") -> Digest:
    """Build the digest and post it: the lines as a message, the chart as a file, in `channel`
    (default: the workspace's alert channel)."""
    from bot import blocks

    digest = build_digest(services, scope, services.clock.now().date())
    client = services.workspaces.client(scope)
    channel = channel or services.workspaces.get(scope).alert_channel
    if not channel:
        raise NoChannel(scope)
    client.chat_postMessage(channel=channel, **blocks.digest_message(digest).as_kwargs())
    client.files_upload_v2(
        channel=channel,
        file=digest.png,
        filename=f"zqbo-digest-{digest.since:%Y%m%d}-{digest.until:%Y%m%d}.png",
        title=f"Entries per company, {digest.since:%d %b} to {digest.until:%d %b %Y}",
    )
    return digest


class NoChannel(Exception):
    """The workspace has no alert channel for its digest yet."""
