"""What one audit adds to the history: a sighting per entry (the store counts it once per day),
and the entries that went into an entry alert group this check, new or already alerted."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import date, datetime

from bot.audit.classify import Entry, instant
from bot.models import FlaggedEntry, HistoryRow

# The integration automated entries belong to when nothing attributed them to one by name.
DEFAULT_INTEGRATION = "Zomentum Payments"


def entry_day(entry: Entry, checked: datetime) -> date:
    """The day an entry counts for: the date of its LastUpdatedTime as QBO wrote it (in the
    company's own time zone, which QBO's offset carries), so a re-read after midnight still counts
    it on its own day; the check's (UTC) day when QBO gave no time it could read."""
    moment = instant(entry.updated_at)
    return moment.date() if moment else checked.date()


def integration_of(entry: Entry) -> str:
    if entry.integration:
        return entry.integration
    return DEFAULT_INTEGRATION if entry.automated else ""


def history_of(
    realm_id: str, entries: Iterable[Entry], flagged: Collection[str], checked: datetime
) -> tuple[list[HistoryRow], list[FlaggedEntry]]:
    """The rows and flagged entries of one check, for Store.add_history (one round trip)."""
    rows: list[HistoryRow] = []
    kept: list[FlaggedEntry] = []
    for entry in entries:
        day, integration, is_flagged = entry_day(entry, checked), integration_of(entry), entry.key in flagged
        rows.append(
            HistoryRow(
                day,
                realm_id,
                integration,
                entry.modified_by,
                seen=1,
                automated=int(entry.automated),
                flagged=int(is_flagged),
                entry=entry.key,
            )
        )
        if is_flagged:
            kept.append(
                FlaggedEntry(
                    realm_id,
                    day,
                    integration,
                    entry.entity,
                    entry.id,
                    entry.doc_number,
                    entry.amount,
                    entry.txn_date,
                    entry.modified_by,
                )
            )
    return rows, kept
