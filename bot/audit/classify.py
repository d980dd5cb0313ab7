"""Who wrote each changed entry, and was it the integration? Plain functions over QBO JSON."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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


class Attribution:
    """Which integration wrote an entry: the first, in the company's order, whose markers match.
    Its rules are one flat list, so three integrations cost what one with as many rules does."""

    def __init__(self, integrations: Iterable[tuple[str, Sequence[Marker]]]) -> None:
        self._rules = tuple((marker, name) for name, markers in integrations for marker in markers)

    def __call__(self, entity: str, obj: dict[str, Any]) -> str | None:
        for marker, name in self._rules:
            if marker.matches(entity, obj):
                return name
        return None


def classify(entity: str, obj: dict[str, Any], markers: Sequence[Marker] | Attribution) -> Entry | None:
    """None for a deleted object (CDC tombstone): deletions are not audited. `markers` are one
    integration's rules (its name left empty) or an Attribution over a company's integrations."""
    if obj.get("status") == "Deleted":
        return None
    attribute = markers if isinstance(markers, Attribution) else Attribution([("", markers)])
    integration = attribute(entity, obj)
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
        automated=integration is not None,
        integration=integration or "",
    )


def classify_all(
    changes: Iterable[tuple[str, dict[str, Any]]], markers: Sequence[Marker] | Attribution
) -> list[Entry]:
    """Latest version of each entry (a window may hold several), deletions dropped."""
    if not isinstance(markers, Attribution):
        markers = Attribution([("", markers)])
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


# What an entry group is about (bot/audit/scan.py turns each into an alert kind).
UNDER_PERSON = "under_person"  # an integration's entries under someone other than its dedicated user
SHARED = "shared"  # an integration's entries under ANOTHER integration's dedicated user
PERSON_ON_SERVICE_ACCOUNT = "person"  # entries matching no integration under a dedicated user
_ORDER = {UNDER_PERSON: 0, SHARED: 1, PERSON_ON_SERVICE_ACCOUNT: 2}


@dataclass(frozen=True)
class Group:
    kind: str
    integration: str  # whose entries (UNDER_PERSON, SHARED) or whose dedicated user (PERSON_…)
    writer: str  # the QBO user id on the entries
    entries: list[Entry]
    owner: str = ""  # SHARED: the integration whose dedicated user wrote them


@dataclass(frozen=True)
class Judgement:
    groups: list[Group]
    not_compared: int  # automated entries of integrations whose dedicated user id is unknown

    @property
    def under_others(self) -> int:
        return sum(len(g.entries) for g in self.groups if g.kind != PERSON_ON_SERVICE_ACCOUNT)


def judge(entries: Iterable[Entry], dedicated: Mapping[str, str]) -> Judgement:
    """Each integration's entries against its own dedicated user (`dedicated`: name -> QBO user
    id, "" while unknown). Entries QuickBooks wrote itself, or with no recorded writer, are never
    anyone's. An integration whose id is unknown is not compared — except that its entries under
    another integration's dedicated user are two apps sharing one account whatever its own is."""
    owner_of: dict[str, str] = {}
    for name, user in dedicated.items():
        if is_user(user):
            owner_of.setdefault(user, name)
    found: dict[tuple[str, str, str, str], list[Entry]] = {}
    not_compared = 0
    for entry in entries:
        if not entry.by_user:
            continue
        writer = entry.modified_by
        if entry.automated:
            own = dedicated.get(entry.integration, "")
            owner = owner_of.get(writer, "")
            if writer == own:
                continue
            if owner and owner != entry.integration:
                key = (SHARED, entry.integration, writer, owner)
            elif not is_user(own):
                not_compared += 1
                continue
            else:
                key = (UNDER_PERSON, entry.integration, writer, "")
        elif writer in owner_of:
            key = (PERSON_ON_SERVICE_ACCOUNT, owner_of[writer], writer, "")
        else:
            continue
        found.setdefault(key, []).append(entry)
    groups = [
        Group(kind, name, writer, found[(kind, name, writer, owner)], owner)
        for kind, name, writer, owner in sorted(found, key=lambda k: (_ORDER[k[0]], k[1:]))
    ]
    return Judgement(groups, not_compared)
