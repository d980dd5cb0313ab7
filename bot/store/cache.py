"""A short-lived, per-process cache of `Store.overview()` for the slash-command ack path.

Under a burst of `/zqbo status` every ack would read the same few rows; this serves them from
memory for at most `ttl` seconds. Any write made through this process drops the cache at once,
so a process always sees its own writes; another process's writes show within `ttl`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from bot.store.base import Overview, Store

_WRITES = ("save_connection", "delete_connection", "record_check", "put_doc", "delete_doc")


class OverviewCache:
    def __init__(self, store: Store, ttl: float = 1.0) -> None:
        self._store = store
        self._ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, ...], tuple[float, int, Overview]] = {}
        self._generation = 0

    @property
    def inner(self) -> Store:
        return self._store

    def overview(self, doc_kinds: Sequence[str] = ()) -> Overview:
        key = tuple(doc_kinds)
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
            generation = self._generation
        if hit is not None and now - hit[0] < self._ttl and hit[1] == generation:
            return hit[2]
        view = self._store.overview(doc_kinds)
        with self._lock:
            if self._generation == generation:  # no write raced with this read
                self._entries[key] = (now, generation, view)
        return view

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name in _WRITES:

            def write(*args: Any, **kwargs: Any) -> Any:
                try:
                    return attr(*args, **kwargs)
                finally:
                    self.invalidate()

            return write
        return attr
