"""A per-process cache of `Store.overview()` for the slash-command ack path.

Under a burst of `/zqbo status` every ack would read and decode the same rows. This keeps the
last read in memory with the store's change marker it was read with; an ack first asks the store
for the current marker (one cheap round trip) and reuses the view only while it is unchanged. Any
process's committed write bumps the marker, so a cached view is never older than a write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from bot.store.base import Overview, Store


class OverviewCache:
    def __init__(self, store: Store, ttl: float = 30.0) -> None:
        self._store = store
        self._ttl = ttl  # an upper bound on reuse, even while nothing changed
        self._lock = threading.Lock()
        self._entries: dict[tuple[object, ...], tuple[float, Overview]] = {}

    @property
    def inner(self) -> Store:
        return self._store

    def overview(
        self,
        realm_doc_kinds: Sequence[str] = (),
        global_doc_kinds: Sequence[str] = (),
        limit: int = 8,
        realms: Sequence[str] | None = None,
        team: str | None = None,
    ) -> Overview:
        key = (tuple(realm_doc_kinds), tuple(global_doc_kinds), limit, tuple(realms or ()), team)
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            if self._store.change_marker(team) == hit[1].marker:
                return hit[1]
        view = self._store.overview(realm_doc_kinds, global_doc_kinds, limit, realms, team)
        with self._lock:
            self._entries[key] = (time.monotonic(), view)
        return view

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
