"""The live connection probe (companyinfo), coalesced: one in flight per company."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future

from bot import metrics
from bot.clock import Clock
from bot.models import CheckResult
from bot.qbo.client import QBOClient
from bot.qbo.connection import ConnectionManager
from bot.qbo.errors import AccessDenied, ConnectionLost, NotConnected, QBOError, TransientError
from bot.store.base import Store

log = logging.getLogger(__name__)


class Prober:
    def __init__(
        self,
        qbo: QBOClient,
        connections: ConnectionManager,
        store: Store,
        clock: Clock,
        reuse_seconds: float = 20.0,
    ) -> None:
        self._qbo = qbo
        self._connections = connections
        self._store = store
        self._clock = clock
        self._reuse = reuse_seconds
        self._mutex = threading.Lock()
        self._inflight: dict[str, Future[CheckResult]] = {}
        self._recent: dict[str, tuple[float, CheckResult]] = {}

    def fresh(self, realm_id: str) -> CheckResult | None:
        """A probe this process finished within the reuse window, if any (no I/O)."""
        with self._mutex:
            recent = self._recent.get(realm_id)
        if recent and time.monotonic() - recent[0] < self._reuse:
            return recent[1]
        return None

    def probe(self, realm_id: str) -> CheckResult:
        """Probe now, or join the probe already running, or reuse one that just finished."""
        with self._mutex:
            recent = self._recent.get(realm_id)
            if recent and time.monotonic() - recent[0] < self._reuse:
                return recent[1]
            future = self._inflight.get(realm_id)
            owner = future is None
            if owner:
                future = Future()
                self._inflight[realm_id] = future
        assert future is not None
        if not owner:
            return future.result()
        try:
            result = self._run(realm_id)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._mutex:
                self._inflight.pop(realm_id, None)
                if future.done() and not future.exception():
                    self._recent[realm_id] = (time.monotonic(), future.result())

    def _run(self, realm_id: str) -> CheckResult:
        started = time.perf_counter()
        try:
            info = self._qbo.company_info(realm_id)
            name = info["company_name"]
            conn = self._connections.get(realm_id)
            if conn and name and name != conn.company_name:
                self._connections.update_details(realm_id, company_name=name)
            result = self._result(realm_id, True, f"QuickBooks answered for {name}")
        except NotConnected:
            result = self._result(realm_id, False, "not connected")
        except ConnectionLost as exc:
            result = self._result(realm_id, False, f"connection lost: {exc.reason}")
        except AccessDenied as exc:
            result = self._result(realm_id, False, str(exc))
        except TransientError as exc:
            result = self._result(realm_id, False, f"QuickBooks did not answer: {exc}")
        except QBOError as exc:
            result = self._result(realm_id, False, f"probe failed: {exc}")
        metrics.PROBE_SECONDS.observe(time.perf_counter() - started)
        self._store.record_check(result)
        return result

    def _result(self, realm_id: str, ok: bool, summary: str) -> CheckResult:
        return CheckResult(realm_id=realm_id, kind="probe", at=self._clock.now(), ok=ok, summary=summary)
