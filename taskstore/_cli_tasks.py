"""``python -m taskstore tasks ...``: the operator's commands (part of :mod:`taskstore.cli`).

Every command takes --store URL (else $TASKSTORE_URL) and --json, before or after the
command's name, and works on every backend. Human-readable tables by default; --json prints
one JSON document (watch: one JSON object per line). Exit codes:

  0  done
  1  the store failed or could not be reached (BackendError)
  2  bad usage or configuration (unknown option, bad URL, missing driver, no store)
  3  no such task (unknown, expired, or not the given owner's)
  4  refused: the task cannot do that (it already finished), or a bad value
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from taskstore.record import TaskRecord
    from taskstore.store import StoreStats, TaskStore

__all__ = [
    "EXIT_BACKEND",
    "EXIT_NOT_FOUND",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "STORE_ENV",
    "add_tasks_parser",
    "run_tasks",
]

EXIT_BACKEND = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_REFUSED = 4

#: The environment variable naming the store when ``--store`` is not given.
STORE_ENV = "TASKSTORE_URL"

_SCAN_NOTE = (
    "Without --owner this reads across owners through the backend's scan: an index walk on "
    "memory, Redis, SQLite and PostgreSQL; a full table scan on DynamoDB (every task's index "
    "entry is read, never results)."
)


def add_tasks_parser(commands: Any) -> None:
    """Add ``tasks`` and its commands to the ``python -m taskstore`` sub-parsers."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given after the command, it overrides the value given before it; absent, it
    # leaves that value alone (argparse would otherwise reset it to the default).
    common.add_argument(
        "--store",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"storage URL (default ${STORE_ENV})",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    tasks = commands.add_parser(
        "tasks",
        help="operator commands: stats, list, get, cancel, fail, cleanup, watch",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks.add_argument(
        "--store", default=None, metavar="URL", help=f"storage URL (default ${STORE_ENV})"
    )
    tasks.add_argument("--json", action="store_true", default=False, help="print JSON for scripts")
    sub = tasks.add_subparsers(dest="tasks_command", required=True)

    sub.add_parser(
        "stats",
        parents=[common],
        help="counts by status, owners, the oldest unfinished task, expired awaiting cleanup",
        description="Count every owner's tasks. " + _SCAN_NOTE,
    )
    listing = sub.add_parser(
        "list",
        parents=[common],
        help="list tasks (one owner's newest first, or every owner's)",
        description="List tasks. " + _SCAN_NOTE,
    )
    listing.add_argument("--owner", default=None, help="only this owner's tasks, newest first")
    listing.add_argument("--status", default=None, help="only tasks in this status")
    listing.add_argument("--limit", type=_positive_int, default=50, help="at most N tasks (50)")

    get = sub.add_parser("get", parents=[common], help="one task: its record and variables")
    get.add_argument("task_id", metavar="ID")
    get.add_argument("--owner", required=True)
    get.add_argument("--result", action="store_true", help="also the outcome (result or error)")

    cancel = sub.add_parser("cancel", parents=[common], help="cancel an unfinished task")
    cancel.add_argument("task_id", metavar="ID")
    cancel.add_argument("--owner", required=True)
    cancel.add_argument("--message", default=None, help="the statusMessage to leave")

    fail = sub.add_parser("fail", parents=[common], help="fail an unfinished (stuck) task")
    fail.add_argument("task_id", metavar="ID")
    fail.add_argument("--owner", required=True)
    fail.add_argument("--message", required=True, help="the error message (and statusMessage)")

    sub.add_parser("cleanup", parents=[common], help="reclaim the space of expired tasks")

    watch = sub.add_parser(
        "watch",
        parents=[common],
        help="print status changes as they happen",
        description=(
            "Print every status change as it happens, made by any process sharing the store "
            "where the backend carries events across processes (Redis, PostgreSQL, SQLite); "
            "on DynamoDB and memory:// only changes made by this process are seen. Runs "
            "until Ctrl-C or SIGTERM (or --count/--timeout)."
        ),
    )
    watch.add_argument("--owner", default=None, help="only this owner's tasks")
    watch.add_argument("--count", type=_positive_int, default=None, help="stop after N changes")
    watch.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS", help="stop after this long"
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def run_tasks(
    args: argparse.Namespace, out: TextIO | None = None, *, store: TaskStore | None = None
) -> int:
    """Run a ``tasks`` command; return its exit status.

    :param out: where answers go (default stdout; errors always go to stderr).
    :param store: an open store to use instead of opening ``--store`` (left open; one
        opened here is closed after the command).
    """
    from taskstore._open import open as open_store
    from taskstore.errors import (
        BackendError,
        ConfigurationError,
        InvalidParamsError,
        InvalidTransitionError,
        MissingDependencyError,
        TaskNotFoundError,
        TaskStoreError,
    )

    out = out or sys.stdout
    url = args.store or os.environ.get(STORE_ENV)
    if store is None and not url:
        print(f"taskstore tasks: no store: give --store URL or set ${STORE_ENV}", file=sys.stderr)
        return EXIT_USAGE
    owned = store is None
    try:
        # The operator acts for any owner, the anonymous one included.
        store = store or open_store(url or "", allow_anonymous=True)
    except (ConfigurationError, MissingDependencyError) as exc:
        print(f"taskstore tasks: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BackendError as exc:
        print(f"taskstore tasks: the store failed: {exc}", file=sys.stderr)
        return EXIT_BACKEND
    command = _COMMANDS[args.tasks_command]
    try:
        with store if owned else contextlib.nullcontext(store):
            return command(store, args, _Printer(out, args.json))
    except KeyboardInterrupt:
        return 0  # Ctrl-C ends `watch`
    except TaskNotFoundError as exc:
        print(f"taskstore tasks: {exc.message}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except (InvalidTransitionError, InvalidParamsError) as exc:
        print(f"taskstore tasks: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    except ConfigurationError as exc:
        print(f"taskstore tasks: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BackendError as exc:
        print(f"taskstore tasks: the store failed: {exc}", file=sys.stderr)
        return EXIT_BACKEND
    except TaskStoreError as exc:
        print(f"taskstore tasks: {exc}", file=sys.stderr)
        return EXIT_REFUSED


class _Printer:
    """Writes a command's answer as a table or as JSON."""

    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out = out
        self.json = as_json

    def document(self, value: Any) -> None:
        self.out.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        for row in [headers, *rows]:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            self.line("  ".join(cells).rstrip())


# -- the commands -------------------------------------------------------------------------


def _task_json(record: TaskRecord, *, variables: bool = False) -> dict[str, Any]:
    """A task for JSON output: the 2025-11-25 wire fields, plus its owner, its method and
    (with ``variables``) its variables."""
    wire: dict[str, Any] = {"owner": record.owner, **record.to_wire()}
    wire["requestMethod"] = record.request_method
    if variables:
        wire["variables"] = record.variables
    return wire


def _task_row(record: TaskRecord) -> list[str]:
    message = record.task.status_message or ""
    return [
        record.task_id,
        record.owner,
        record.status.value,
        record.task.created_at,
        record.task.last_updated_at,
        message if len(message) <= 40 else message[:39] + "…",
    ]


_TASK_HEADERS = ["TASK ID", "OWNER", "STATUS", "CREATED", "UPDATED", "MESSAGE"]


def _stats(store: TaskStore, args: argparse.Namespace, printer: _Printer) -> int:
    import msgspec

    stats: StoreStats = store.stats()
    if printer.json:
        printer.document(msgspec.to_builtins(stats))
        return 0
    printer.line(f"tasks       {stats.tasks}")
    for status, count in stats.by_status.items():
        printer.line(f"  {status:<16}{count}")
    printer.line(f"owners      {stats.owners}")
    printer.line(f"expired     {stats.expired} (awaiting cleanup)")
    oldest = stats.oldest_unfinished
    if oldest is None:
        printer.line("oldest unfinished: none")
    else:
        printer.line(
            f"oldest unfinished: {oldest.task_id} (owner {oldest.owner!r}, {oldest.status}, "
            f"created {oldest.created_at}, {_age(oldest.age_ms)} ago)"
        )
    return 0


def _age(ms: int) -> str:
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


def _listed(store: TaskStore, args: argparse.Namespace) -> tuple[list[TaskRecord], bool]:
    """Up to ``--limit`` tasks and whether more were left."""
    from taskstore.states import TaskStatus

    status = None if args.status is None else _checked_status(args.status)
    found: list[TaskRecord] = []
    cursor: str | None = None
    while True:
        if args.owner is not None:
            page = store.list(args.owner, cursor=cursor, limit=store.config.max_list_page_size)
            records, cursor = page.tasks, page.next_cursor
            records = [r for r in records if status is None or r.status is TaskStatus(status)]
        else:
            scanned = store.scan(cursor, 100, status=status)
            records, cursor = scanned.tasks, scanned.next_cursor
        found.extend(records)
        if len(found) > args.limit:
            return found[: args.limit], True
        if cursor is None:
            return found, False


def _checked_status(text: str) -> str:
    from taskstore.errors import InvalidParamsError
    from taskstore.states import TaskStatus

    if text not in {status.value for status in TaskStatus}:
        names = ", ".join(status.value for status in TaskStatus)
        raise InvalidParamsError(f"Unknown status {text!r}; one of: {names}")
    return text


def _list(store: TaskStore, args: argparse.Namespace, printer: _Printer) -> int:
    records, more = _listed(store, args)
    if printer.json:
        printer.document({"tasks": [_task_json(r) for r in records], "more": more})
        return 0
    if not records:
        printer.line("no tasks")
        return 0
    printer.table(_TASK_HEADERS, [_task_row(r) for r in records])
    if more:
        printer.line(f"(first {args.limit} shown; raise --limit for more)")
    return 0


def _get(store: TaskStore, args: argparse.Namespace, printer: _Printer) -> int:
    record = store.get(args.task_id, args.owner)
    document = _task_json(record, variables=True)
    document["expiresAt"] = record.expires_at_ms
    if args.result:
        document["outcome"] = _outcome(store, record)
    if printer.json:
        printer.document(document)
        return 0
    printer.table(["FIELD", "VALUE"], [[k, _text(v)] for k, v in document.items()])
    return 0


def _outcome(store: TaskStore, record: TaskRecord) -> Any:
    """The stored outcome as JSON (``None`` while the task has none)."""
    from taskstore.errors import NotReadyError, TaskCancelledError

    try:
        outcome = store.get_result(record.task_id, record.owner)
    except (NotReadyError, TaskCancelledError):
        return None
    if outcome.error is not None:
        return {"error": outcome.error}
    return {"result": outcome.result}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _finished(record: TaskRecord, printer: _Printer) -> int:
    if printer.json:
        printer.document(_task_json(record))
    else:
        printer.line(f"{record.task_id}: {record.status.value}")
    return 0


def _cancel(store: TaskStore, args: argparse.Namespace, printer: _Printer) -> int:
    return _finished(store.cancel(args.task_id, args.owner, args.message), printer)


def _fail(store: TaskStore, args: argparse.Namespace, printer: _Printer) -> int:
    error = {"code": -32603, "message": args.message}
    return _finished(store.fail(args.task_id, args.owner, error, args.message), printer)


def _cleanup(store: TaskStore, args: argparse.Namespace, printer: _Printer) -> int:
    removed = store.cleanup_expired()
    if printer.json:
        printer.document({"removed": removed})
    else:
        printer.line(f"removed {removed} expired task(s)")
    return 0


def _watch(store: TaskStore, args: argparse.Namespace, printer: _Printer) -> int:
    changes: queue.Queue[TaskRecord] = queue.Queue()
    stop = _stop_on_signals()
    unsubscribe = store.watch(changes.put, owner=args.owner)
    # Say so once listening: a script (or a test) may start writing from then on.
    print("watching", file=sys.stderr, flush=True)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    seen = 0
    try:
        while not stop() and (args.count is None or seen < args.count):
            wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                record = changes.get(timeout=wait)
            except queue.Empty:
                continue
            seen += 1
            if printer.json:
                printer.line(json.dumps(_task_json(record), ensure_ascii=False))
            else:
                message = record.task.status_message
                printer.line(
                    f"{record.task.last_updated_at}  {record.task_id}  {record.owner}  "
                    f"{record.status.value}" + (f"  {message}" if message else "")
                )
    finally:
        unsubscribe()
    return 0


def _stop_on_signals() -> Callable[[], bool]:
    """A flag raised by SIGTERM (Ctrl-C ends the loop through KeyboardInterrupt)."""
    stopped: list[bool] = []
    with contextlib.suppress(ValueError):  # not the main thread: no handler, no flag
        signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    return lambda: bool(stopped)


_COMMANDS: dict[str, Callable[[TaskStore, argparse.Namespace, _Printer], int]] = {
    "stats": _stats,
    "list": _list,
    "get": _get,
    "cancel": _cancel,
    "fail": _fail,
    "cleanup": _cleanup,
    "watch": _watch,
}
