"""``python -m taskstore demo``: the task lifecycle on the embedded store, step by step.

Everything printed is real: worker threads drive tasks through the store and each step shows
the JSON a ``tasks/get`` (or ``tasks/result``/``tasks/list``) client would receive.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

from taskstore._open import open as open_store
from taskstore._version import __version__
from taskstore.context import TaskContext
from taskstore.errors import InvalidTransitionError
from taskstore.record import TaskRecord
from taskstore.states import TaskStatus
from taskstore.store import TaskStore

__all__ = ["run_demo"]

_OWNER = "demo-user"


class _Printer:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def step(self, title: str) -> None:
        with self._lock:
            print(f"\n== {title}", file=self._out, flush=True)

    def line(self, text: str) -> None:
        with self._lock:
            print(f"   {text}", file=self._out, flush=True)

    def wire(self, label: str, payload: Any) -> None:
        with self._lock:
            text = json.dumps(payload, ensure_ascii=False, sort_keys=False)
            print(f"   {label}: {text}", file=self._out, flush=True)


def _worker_with_input(
    store: TaskStore, task_id: str, answer: threading.Event, printer: _Printer
) -> None:
    ctx = TaskContext(store, task_id, _OWNER)
    ctx.set_variables({"step": "download", "progress": 0.3})
    record = ctx.require_input("Overwrite the existing report? (yes/no)")
    printer.wire("worker → input_required", record.to_wire(include_variables=True))
    answer.wait(10)
    confirmed = ctx.get_bool("confirm")
    record = ctx.resume("Writing report")
    printer.wire("worker → working", record.to_wire(include_variables=True))
    ctx.set_variables({"step": "write", "progress": 1.0})
    ctx.complete(
        {
            "content": [{"type": "text", "text": f"Report written (overwrite={confirmed})"}],
            "structuredContent": {"rows": 42, "overwrite": confirmed},
        },
        message="Report ready",
    )


def run_demo(store_url: str = "memory://", out: TextIO | None = None) -> int:
    """Run the walkthrough on ``store_url`` and print each step's wire JSON; return 0."""
    printer = _Printer(out if out is not None else sys.stdout)
    with open_store(store_url, default_ttl_ms=600_000, poll_interval_ms=500) as store:
        printer.step(f"taskstore {__version__} on {store_url}")
        events: list[str] = []
        store.subscribe(
            lambda task: events.append(f"{task['taskId'][:8]} → {task['status']}"), owner=_OWNER
        )

        printer.step("1. A task that needs input: working → input_required → working → completed")
        record = store.create(
            _OWNER, "tools/call", request={"name": "make_report", "arguments": {}}
        )
        printer.wire("CreateTaskResult", {"task": record.to_wire()})
        answer = threading.Event()
        worker = threading.Thread(
            target=_worker_with_input, args=(store, record.task_id, answer, printer)
        )
        worker.start()
        while store.get(record.task_id, _OWNER).status is not TaskStatus.INPUT_REQUIRED:
            time.sleep(0.001)
        printer.line("client answers through a task variable: confirm = true")
        store.set_variables(record.task_id, _OWNER, {"confirm": True})
        answer.set()
        done = store.wait(record.task_id, _OWNER, timeout=10)
        worker.join()
        printer.wire("tasks/get", done.to_wire(include_variables=True))
        printer.wire("tasks/result", store.get_result(record.task_id, _OWNER).result)

        printer.step("2. A failing task keeps its error as the outcome")
        failing = store.create(_OWNER, "tools/call")
        store.fail(
            failing.task_id, _OWNER, {"code": -32603, "message": "upstream API returned 503"}
        )
        printer.wire("tasks/get", store.get(failing.task_id, _OWNER).to_wire())
        printer.wire("tasks/result error", store.get_result(failing.task_id, _OWNER).error)

        printer.step("3. cancel races complete: exactly one wins")
        racing = store.create(_OWNER, "tools/call")
        barrier = threading.Barrier(2)
        outcomes: dict[str, str] = {}

        def attempt(name: str) -> None:
            barrier.wait()
            try:
                if name == "complete":
                    store.complete(racing.task_id, _OWNER, {"content": []})
                else:
                    store.cancel(racing.task_id, _OWNER, "Cancelled by the client")
                outcomes[name] = "won"
            except InvalidTransitionError as exc:
                outcomes[name] = f"lost ({exc.to_jsonrpc()['code']}: {exc.message})"

        racers = [threading.Thread(target=attempt, args=(n,)) for n in ("complete", "cancel")]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        for name in ("complete", "cancel"):
            printer.line(f"{name}: {outcomes[name]}")
        winners = [name for name, result in outcomes.items() if result == "won"]
        printer.wire("tasks/get", store.get(racing.task_id, _OWNER).to_wire())
        if len(winners) != 1:
            printer.line("BUG: expected exactly one winner")
            return 1

        printer.step("4. wait() returns the moment a task finishes")
        slow = store.create(_OWNER, "tools/call")
        finished_at: list[float] = []

        def finish_later() -> None:
            time.sleep(0.2)
            finished_at.append(time.perf_counter())
            store.complete(slow.task_id, _OWNER, {"content": []})

        threading.Thread(target=finish_later).start()
        result: TaskRecord = store.wait(slow.task_id, _OWNER, timeout=10)
        latency_ms = (time.perf_counter() - finished_at[0]) * 1000
        printer.line(
            f"wait() returned {latency_ms:.2f} ms after complete() ({result.status.value})"
        )

        printer.step("5. One page of tasks/list (newest first)")
        page = store.list(_OWNER, limit=3)
        printer.wire(
            "tasks/list",
            {
                "tasks": [r.to_wire() for r in page.tasks],
                **({"nextCursor": page.next_cursor} if page.next_cursor else {}),
            },
        )
        if page.next_cursor:
            rest = store.list(_OWNER, page.next_cursor, limit=3)
            printer.line(f"next page: {len(rest.tasks)} more task(s)")

        printer.step("6. Status notifications seen by a subscriber")
        time.sleep(0.01)
        for event in events:
            printer.line(event)
    printer.step("done")
    return 0
