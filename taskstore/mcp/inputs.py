"""Server → client input requests of running tasks (``elicitation/create`` and friends).

A tool running as a task asks the client for input through :meth:`InputBroker.ask`; the task
goes ``input_required``. The requests reach the client on the stream of its ``tasks/result``
call (spec: a requestor that sees ``input_required`` calls ``tasks/result``), and the client's
JSON-RPC *response*, posted back on its session, is routed here by :meth:`InputBroker.resolve`.

Pending requests live in this process's memory: the process running the tool is the one that
can deliver them (a ``tasks/result`` served by another process sees ``input_required`` but not
the request). Every method is thread-safe.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from taskstore.mcp.jsonrpc import JsonDict, request
from taskstore.types import META_RELATED_TASK

__all__ = ["InputBroker", "PendingInput"]


@dataclass(eq=False)
class PendingInput:
    """One outstanding server → client request of a task.

    :ivar request_id: the JSON-RPC id the client's response must carry.
    :ivar message: the JSON-RPC request to deliver.
    :ivar response: the client's JSON-RPC response once it arrived.
    """

    request_id: str
    task_id: str
    owner: str
    message: JsonDict
    response: JsonDict | None = None
    done: threading.Event = field(default_factory=threading.Event)
    holder: object | None = None


class InputBroker:
    """Holds every outstanding input request of the tasks running in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, PendingInput] = {}
        self._by_task: dict[tuple[str, str], list[PendingInput]] = {}
        self._watchers: dict[tuple[str, str], list[Callable[[], None]]] = {}
        # The random prefix keeps ids of different server processes apart; the counter keeps
        # them unique within one.
        self._prefix = f"taskstore-{secrets.token_hex(6)}-"
        self._counter = itertools.count(1)

    def ask(self, task_id: str, owner: str, method: str, params: Mapping[str, Any]) -> PendingInput:
        """Queue a request for the client of task ``task_id``; return its handle.

        The request's ``params._meta`` carries the related-task key (spec: every message
        about a task names it).
        """
        body = dict(params)
        meta = body.get("_meta")
        merged: JsonDict = dict(meta) if isinstance(meta, Mapping) else {}
        merged[META_RELATED_TASK] = {"taskId": task_id}
        body["_meta"] = merged
        request_id = f"{self._prefix}{next(self._counter)}"
        pending = PendingInput(
            request_id=request_id,
            task_id=task_id,
            owner=owner,
            message=request(request_id, method, body),
        )
        with self._lock:
            self._by_id[request_id] = pending
            self._by_task.setdefault((owner, task_id), []).append(pending)
            watchers = list(self._watchers.get((owner, task_id), ()))
        for wake in watchers:
            wake()
        return pending

    def withdraw(self, pending: PendingInput) -> None:
        """Forget ``pending`` (answered, or its task ended)."""
        with self._lock:
            self._by_id.pop(pending.request_id, None)
            key = (pending.owner, pending.task_id)
            items = self._by_task.get(key)
            if items is not None:
                if pending in items:
                    items.remove(pending)
                if not items:
                    del self._by_task[key]

    def outstanding(self, task_id: str, owner: str) -> int:
        """How many requests of the task still wait for an answer."""
        with self._lock:
            return len(self._by_task.get((owner, task_id), ()))

    def take(self, task_id: str, owner: str, holder: object) -> list[JsonDict]:
        """Return the task's requests not yet held by a stream, and mark them held by
        ``holder`` (each request goes to one stream only, as the transport spec requires)."""
        with self._lock:
            taken = []
            for pending in self._by_task.get((owner, task_id), ()):
                if pending.holder is None:
                    pending.holder = holder
                    taken.append(pending.message)
            return taken

    def release(self, holder: object) -> None:
        """A stream closed: its unanswered requests may go out on the next stream."""
        with self._lock:
            for pending in self._by_id.values():
                if pending.holder is holder:
                    pending.holder = None

    def watch(self, task_id: str, owner: str, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake()`` whenever a request for the task is queued; return the remover."""
        key = (owner, task_id)
        with self._lock:
            self._watchers.setdefault(key, []).append(wake)

        def remove() -> None:
            with self._lock:
                items = self._watchers.get(key)
                if items is not None and wake in items:
                    items.remove(wake)
                    if not items:
                        del self._watchers[key]

        return remove

    def resolve(self, response: Mapping[str, Any], owner: str) -> bool:
        """Deliver a client's JSON-RPC response; ``False`` when no request of ``owner`` has
        its id (unknown, already answered, or another owner's: ignored without a trace)."""
        request_id = response.get("id")
        if not isinstance(request_id, str):
            return False
        with self._lock:
            pending = self._by_id.get(request_id)
            if pending is None or pending.owner != owner:
                return False
        pending.response = dict(response)
        pending.done.set()
        self.withdraw(pending)
        return True
