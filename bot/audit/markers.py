"""Markers: small rules that recognise an entry the integration wrote.

Syntax (ZQBO_MARKERS or `/zqbo config markers …`): rules separated by `;` or new lines; an entry
matching any rule is automated. A rule is `[Entity:]field OP value`:

    PrivateNote~Zomentum                    field contains value (case-insensitive)
    PaymentMethodRef.name=Zomentum Payments field equals value (case-insensitive)
    DocNumber^ZP-                           field starts with value (case-insensitive)
    Deposit:DepositToAccountRef.value=35    only for Deposit entries

`field` is a dotted path into the QBO object (`PaymentMethodRef.name`, `MetaData.CreateTime`…).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

OPERATORS = {"~": "contains", "=": "equals", "^": "starts with"}
_RULE = re.compile(
    r"^(?:(?P<entity>[A-Za-z]+):)?(?P<path>[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)(?P<op>[~=^])(?P<value>.*)$"
)


class MarkerError(ValueError):
    """A rule that cannot be read; the message points at the bad part."""


@dataclass(frozen=True)
class Marker:
    path: tuple[str, ...]
    op: str
    value: str  # lower-cased
    entity: str = ""
    source: str = ""

    def matches(self, entity: str, obj: dict[str, Any]) -> bool:
        if self.entity and self.entity != entity:
            return False
        current: Any = obj
        for part in self.path:
            if not isinstance(current, dict):
                return False
            current = current.get(part)
        if current is None or isinstance(current, dict | list):
            return False
        text = str(current).lower()
        if self.op == "~":
            return self.value in text
        if self.op == "=":
            return text == self.value
        return text.startswith(self.value)

    def describe(self) -> str:
        where = f"{self.entity} " if self.entity else ""
        return f"{where}{'.'.join(self.path)} {OPERATORS[self.op]} “{self.value}”"


def parse_markers(text: str) -> list[Marker]:
    rules = [r.strip() for r in re.split(r"[;\n]", text or "") if r.strip()]
    markers = []
    for number, rule in enumerate(rules, start=1):
        markers.append(_parse_rule(rule, number))
    return markers


def _parse_rule(rule: str, number: int) -> Marker:
    where = f"rule {number} `{rule}`"
    op_at = next((i for i, ch in enumerate(rule) if ch in OPERATORS), -1)
    if op_at < 0:
        raise MarkerError(f"{where}: no operator — use `~` (contains), `=` (equals) or `^` (starts with)")
    if op_at == 0 or rule[op_at - 1] == ":":
        raise MarkerError(f"{where}: the field before `{rule[op_at]}` is missing")
    if not rule[op_at + 1 :].strip():
        raise MarkerError(f"{where}: the value after `{rule[op_at]}` is missing")
    match = _RULE.match(rule)
    if not match:
        left = rule[:op_at]
        raise MarkerError(
            f"{where}: `{left}` is not a field path (letters, digits, `_`, dots; optional `Entity:` first)"
        )
    return Marker(
        path=tuple(match.group("path").split(".")),
        op=match.group("op"),
        value=match.group("value").strip().lower(),
        entity=match.group("entity") or "",
        source=rule,
    )
