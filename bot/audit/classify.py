"""Who wrote each changed entry, and was it the integration? Plain functions over QBO JSON."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.audit.markers import Marker

# Who wrote an entry, from MetaData.LastModifiedByRef. Only a QBO user id is ever compared with
# the dedicated user: QuickBooks itself (recurring transactions, bank rules) writes as "0", and
# some entries (Intuit's own CDC sample among them) carry no LastModifiedByRef at all.
QUICKBOOKS = "0"
UNKNOWN = ""
MAX_WRITER = 32  # real ids are 16 digits; anything longer is not one of QBO's


def writer_of(meta: Any) -> str:
    """A QBO user id, QUICKBOOKS, or UNKNOWN."""
    ref = meta.get("LastModifiedByRef") if isinstance(meta, dict) else None
    value = ref.get("value") if isinstance(ref, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return UNKNOWN
    value = value.strip()
    if value.isascii() and value.isdigit() and value.strip("0") == "":
        return QUICKBOOKS
    return value[:MAX_WRITER]


def is_user(writer: str) -> bool:
    """Whether a writer is a QBO user (a person or an integration's user), not QuickBooks or unknown."""
    return writer not in (QUICKBOOKS, UNKNOWN)


def instant(text: str) -> datetime | None:
    """A QBO time as an instant: offsets change with daylight saving (-07:00 / -08:00) and some
    times carry milliseconds, so their strings do not sort."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else None


@dataclass(frozen=True, slots=True)
class Entry:
    entity: str
    id: str
    doc_number: str
    amount: float | None
    txn_date: str
    created_at: str
    updated_at: str
    modified_by: str  # a QBO user id, QUICKBOOKS or UNKNOWN (see writer_of)
    automated: bool
    integration: str = ""  # the name of the integration whose markers matched; "" for people's work

    @property
    def by_user(self) -> bool:
        return is_user(self.modified_by)

    def newer_than(self, other: Entry) -> bool:
        """Whether this version of an entry replaces `other` (same key): the later instant wins;
        a time that cannot be read never replaces one that can."""
        mine, theirs = instant(self.updated_at), instant(other.updated_at)
        if mine is None or theirs is None:
            return theirs is None
        return mine >= theirs

    @property
    def key(self) -> str:
        return f"{self.entity}:{self.id}"

    @property
    def label(self) -> str:
        return f"{self.entity} {self.doc_number or self.id}"

    def to_doc(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "entity": self.entity,
            "id": self.id,
            "doc_number": self.doc_number,
            "amount": self.amount,
            "txn_date": self.txn_date,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "modified_by": self.modified_by,
            "automated": self.automated,
            "integration": self.integration,
        }


def classify(entity: str, obj: dict[str, Any], markers: list[Marker]) -> Entry | None:
    """None for a deleted object (CDC tombstone): deletions are not audited."""
    if obj.get("status") == "Deleted":
        return None
    meta = obj.get("MetaData") if isinstance(obj.get("MetaData"), dict) else {}
    amount = obj.get("TotalAmt", obj.get("Amount"))
    return Entry(
        entity=entity,
        id=str(obj.get("Id", "")),
        doc_number=str(obj.get("DocNumber") or ""),
        amount=float(amount) if isinstance(amount, int | float) else None,
        txn_date=str(obj.get("TxnDate") or ""),
        created_at=str(meta.get("CreateTime") or ""),
        updated_at=str(meta.get("LastUpdatedTime") or ""),
        modified_by=writer_of(meta),
        automated=any(m.matches(entity, obj) for m in markers),
    )


def classify_all(changes: Iterable[tuple[str, dict[str, Any]]], markers: list[Marker]) -> list[Entry]:
    """Latest version of each entry (a window may hold several), deletions dropped."""
    latest: dict[str, Entry] = {}
    for entity, obj in changes:
        entry = classify(entity, obj, markers)
        if entry is None:
            continue
        known = latest.get(entry.key)
        if known is None or entry.newer_than(known):
            latest[entry.key] = entry
    return list(latest.values())


@dataclass(frozen=True)
class Findings:
    offending: dict[str, list[Entry]]  # non-dedicated QBO user id -> automated entries they wrote
    person_on_dedicated: list[Entry]  # manual entries under the dedicated id


def find(entries: list[Entry], dedicated_id: str) -> Findings:
    """Entries QuickBooks wrote itself, or with no recorded writer, are never a person's."""
    offending: dict[str, list[Entry]] = {}
    person: list[Entry] = []
    if not is_user(dedicated_id):
        return Findings({}, [])
    for entry in entries:
        if not entry.by_user:
            continue
        if entry.automated and entry.modified_by != dedicated_id:
            offending.setdefault(entry.modified_by, []).append(entry)
        elif not entry.automated and entry.modified_by == dedicated_id:
            person.append(entry)
    return Findings(offending, person)


def not_by_users(entries: Iterable[Entry]) -> tuple[int, int]:
    """(entries QuickBooks wrote itself, entries with no recorded writer): counted, never compared."""
    by_quickbooks = unknown = 0
    for entry in entries:
        by_quickbooks += entry.modified_by == QUICKBOOKS
        unknown += entry.modified_by == UNKNOWN
    return by_quickbooks, unknown
