"""The health check of the MCP endpoint (``GET /healthz``): is the store reachable?

:class:`HealthCheck` answers 200 ``{"status": "ok"}`` when the store answers a cheap probe
(:meth:`TaskStore.ping <taskstore.TaskStore.ping>`) within ``timeout_s``, else 503
``{"status": "unavailable"}`` with ``Retry-After``. The body never names the store, its URL or
the error (those go to the log). The probe runs on a thread of its own, so a driver blocked
in a socket read cannot hold the answer past the timeout; concurrent checks share the probe in
flight, so a load balancer polling hard during an outage never piles up store calls.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from taskstore.errors import TaskStoreError
from taskstore.http.responses import Response, json_response
from taskstore.store import TaskStore

__all__ = ["DEFAULT_HEALTH_TIMEOUT_S", "HealthCheck"]

_log = logging.getLogger("taskstore.wsgi")

#: Seconds the store has to answer a health probe by default.
DEFAULT_HEALTH_TIMEOUT_S = 2.0


class HealthCheck:
    """Probes ``store`` for ``GET /healthz``. Thread-safe.

    :param store: the store to probe.
    :param timeout_s: the probe's deadline; slower is unhealthy.
    """

    def __init__(self, store: TaskStore, timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskstore-health")
        self._probe: Future[None] | None = None

    def healthy(self) -> bool:
        """Whether the store answered a probe within the timeout (this one or the one in
        flight)."""
        with self._lock:
            probe = self._probe
            if probe is None or probe.done():
                probe = self._probe = self._pool.submit(self.store.ping, self.timeout_s)
        try:
            probe.result(timeout=self.timeout_s)
        except FutureTimeout:
            _log.warning("health check: the store did not answer within %.1f s", self.timeout_s)
            return False
        except TaskStoreError as exc:
            _log.warning("health check: the store failed: %s", exc)
            return False
        except Exception:  # noqa: BLE001 - a bug below is "unhealthy", logged, never a 500
            _log.exception("health check: the probe raised")
            return False
        return True

    def response(self) -> Response:
        """The HTTP answer: 200 ``{"status": "ok"}`` or 503 ``{"status": "unavailable"}``."""
        if self.healthy():
            return json_response(200, {"status": "ok"}, headers=[("Cache-Control", "no-store")])
        return json_response(
            503,
            {"status": "unavailable"},
            headers=[("Cache-Control", "no-store"), ("Retry-After", "1")],
        )

    def close(self) -> None:
        """Stop the probe thread (a probe in flight finishes on its own)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
