"""The token journal: where a rotated refresh token is made durable before anything else.

Intuit kills the old refresh token the moment it answers a refresh, so the new one must reach
disk before any other step can fail (a store outage, a kill). Each process appends to a file of
its own under ZQBO_JOURNAL_DIR — one line per rotation, the whole record sealed with the store's
key, fsync'd — and settles the line once the store holds that token (or a newer one). What the
store could not take stays, and is written again with backoff until it is; any process of the
same store replays the files it finds at start (a process killed with entries pending leaves its
file behind). A replay never rolls a token back: the store keeps whichever generation is newer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from bot.models import Connection
from bot.store import codec
from bot.store.crypto import TokenCipher

log = logging.getLogger(__name__)

SUFFIX = ".journal"


def store_identity(identity: str) -> str:
    """Which store a journal line belongs to (a store's `identity`: backend, where, namespace):
    other zqbos (or tests) may share the folder, and never get a token replayed into theirs."""
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Pending:
    conn: Connection
    path: Path  # the journal file that holds it


class TokenJournal:
    def __init__(self, directory: str | Path, cipher: TokenCipher, store_id: str) -> None:
        self.directory = Path(directory)
        self._cipher = cipher
        self._store_id = store_id
        name = f"tokens-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        self.path = self.directory / name
        self._lock = threading.Lock()  # this process's writers; FileLock keeps other processes out

    # writing -------------------------------------------------------------------------------------
    def record(self, conn: Connection) -> None:
        """Append the rotated connection and fsync it: when this returns, a kill cannot lose it."""
        line = self._seal(conn)
        with self._lock, self._file_lock(self.path):
            created = not self.path.exists()
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.directory)

    def settle(self, realm_id: str, generation: int, path: Path | None = None) -> None:
        """The store holds `generation` (or newer) for the realm: its lines are done."""
        target = path or self.path
        with self._lock, self._file_lock(target):
            entries = self._read(target)
            keep = [c for c in entries if not (c.realm_id == realm_id and c.token_generation <= generation)]
            if len(keep) != len(entries):
                self._rewrite(target, keep)

    def reseal(self) -> int:
        """Seal every pending line of this store again under the newest key (`zqbo rekey`); lines
        of other stores, or under keys not given, are left as they are. How many were resealed."""
        count = 0
        for path in self._files():
            with self._lock, self._file_lock(path):
                entries = self._read(path)
                if entries:
                    self._rewrite(path, entries)
                    count += len(entries)
        return count

    # reading -------------------------------------------------------------------------------------
    def pending(self, mine_only: bool = False) -> list[Pending]:
        """Lines not yet settled, in this folder and for this store (this process's file first)."""
        paths = [self.path] if mine_only else self._files()
        out = []
        for path in paths:
            out += [Pending(c, path) for c in self._read(path)]
        return out

    def newest(self, realm_id: str) -> Connection | None:
        """The newest journaled token of a realm, from any process of this store on this host."""
        found = [p.conn for p in self.pending() if p.conn.realm_id == realm_id]
        return max(found, key=lambda c: c.token_generation) if found else None

    def replay(self, save: Callable[[Connection], bool]) -> tuple[int, int]:
        """Write every pending line to the store (`save` keeps the newer generation and says
        whether the store now holds this one or a newer one), settling what it took. Another
        process's file may be replayed while its owner lives: the store keeps the newer generation.
        Returns (written, still pending)."""
        written = left = 0
        for path in self._files():
            try:
                with self._file_lock(path, wait=5):
                    entries = self._read(path)
            except Timeout:
                left += 1
                continue
            done: list[tuple[str, int]] = []
            for conn in sorted(entries, key=lambda c: c.token_generation):
                try:
                    ok = save(conn)
                except Exception as exc:  # the store is still away: try again later
                    log.warning("journaled token for realm %s not stored yet: %s", conn.realm_id, exc)
                    ok = False
                if ok:
                    done.append((conn.realm_id, conn.token_generation))
                    written += 1
                else:
                    left += 1
            for realm_id, generation in done:
                self.settle(realm_id, generation, path)
        return written, left

    # files ---------------------------------------------------------------------------------------
    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        others = sorted(p for p in self.directory.glob(f"*{SUFFIX}") if p != self.path)
        return ([self.path] if self.path.exists() else []) + others

    def _read(self, path: Path) -> list[Connection]:
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            if not line.strip():
                continue
            try:
                doc = json.loads(self._cipher.decrypt(line))
            except ValueError:
                continue  # another key's line, or a line torn by a crash mid-write: not ours
            if doc.get("store") == self._store_id:
                out.append(codec.load_connection(doc["connection"], self._cipher))
        # lines of other stores are kept as they are: their own zqbo replays them
        return out

    def _rewrite(self, path: Path, keep: list[Connection]) -> None:
        foreign = [line for line in _lines(path) if not self._is_ours(line)]
        lines = foreign + [self._seal(c) for c in keep]
        if not lines:
            path.unlink(missing_ok=True)
            _fsync_dir(path.parent)
            return
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, ("\n".join(lines) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def _is_ours(self, line: str) -> bool:
        try:
            return json.loads(self._cipher.decrypt(line)).get("store") == self._store_id
        except ValueError:
            return False

    def _seal(self, conn: Connection) -> str:
        doc = {"store": self._store_id, "connection": codec.dump_connection(conn, self._cipher)}
        return self._cipher.encrypt(json.dumps(doc))

    @contextmanager
    def _file_lock(self, path: Path, wait: float = 30) -> Iterator[None]:
        """One lock for the folder (no lock file left behind per process): appends, rewrites and
        replays are short."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path.parent / ".journal.lock"), timeout=wait):
            yield


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _fsync_dir(directory: Path) -> None:
    """A created, renamed or removed file survives a crash only once its folder is fsync'd."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Retrier:
    """Writes what the journal still holds to the store, with backoff, until it is all in."""

    def __init__(self, run: Callable[[], int], first: float = 0.25, most: float = 2.0) -> None:
        self._run = run  # one pass; returns how many lines are still pending
        self._first, self._most = first, most
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def kick(self) -> None:
        with self._guard:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="zqbo-token-journal", daemon=True)
                self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def _loop(self) -> None:
        delay = self._first
        while not self._stopped.is_set():
            self._wake.clear()
            try:
                left = self._run()
            except Exception:
                log.exception("token journal replay failed; trying again")
                left = 1
            if left == 0:
                return
            self._wake.wait(delay)
            delay = min(self._most, delay * 2)


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
