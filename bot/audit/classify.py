"""Who wrote each changed entry, and was it the integration? Plain functions over QBO JSON."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bot.audit.markers import Marker


@dataclass(frozen=True, slots=True)
class Entry:
    entity: str
    id: str
    doc_number: str
    amount: float | None
    txn_date: str
    created_at: str
    updated_at: str
    modified_by: str  # MetaData.LastModifiedByRef.value: the numeric QBO user id
    automated: bool

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
        }


def classify(entity: str, obj: dict[str, Any], markers: list[Marker]) -> Entry | None:
    """None for a deleted object (CDC tombstone): deletions are not audited."""
    if obj.get("status") == "Deleted":
        return None
    meta = obj.get("MetaData") or {}
    by = meta.get("LastModifiedByRef") or {}
    amount = obj.get("TotalAmt", obj.get("Amount"))
    return Entry(
        entity=entity,
        id=str(obj.get("Id", "")),
        doc_number=str(obj.get("DocNumber") or ""),
        amount=float(amount) if isinstance(amount, int | float) else None,
        txn_date=str(obj.get("TxnDate") or ""),
        created_at=str(meta.get("CreateTime") or ""),
        updated_at=str(meta.get("LastUpdatedTime") or ""),
        modified_by=str(by.get("value") or ""),
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
        if known is None or entry.updated_at >= known.updated_at:
            latest[entry.key] = entry
    return list(latest.values())


@dataclass(frozen=True)
class Findings:
    offending: dict[str, list[Entry]]  # non-dedicated QBO user id -> automated entries they wrote
    person_on_dedicated: list[Entry]  # manual entries under the dedicated id


def find(entries: list[Entry], dedicated_id: str) -> Findings:
    offending: dict[str, list[Entry]] = {}
    person: list[Entry] = []
    if not dedicated_id:
        return Findings({}, [])
    for entry in entries:
        if entry.automated and entry.modified_by != dedicated_id:
            offending.setdefault(entry.modified_by or "unknown", []).append(entry)
        elif not entry.automated and entry.modified_by == dedicated_id:
            person.append(entry)
    return Findings(offending, person)
