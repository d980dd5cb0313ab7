"""Counts in sentences: "1 changed entry", "2 changed entries"."""

from __future__ import annotations


def plural(count: int, one: str, many: str | None = None) -> str:
    """`count` with the noun that fits it: `plural(1, "alert")` → "1 alert"; irregular plurals
    are given (`plural(2, "changed entry", "changed entries")`)."""
    return f"{count} {one if count == 1 else (many or one + 's')}"
