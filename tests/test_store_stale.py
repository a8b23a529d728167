"""Stale-task recovery, the store's side: ``TaskStore.touch`` and ``TaskStore.fail_stale``,
run over every backend of the table on a manual clock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import taskstore._store_stale as stale_module
from taskstore import (
    ConfigurationError,
    InvalidParamsError,
    InvalidTransitionError,
    ManualClock,
    TaskNotFoundError,
    TaskStatus,
    TaskStore,
)
from taskstore.backends.base import ScanningBackend
from taskstore.backends.memory import InMemoryBackend
from taskstore.clock import format_timestamp
from taskstore.record import TaskRecord
from taskstore.testing import T0, TRICKY_OWNERS
from taskstore.testing._support import wait_until

MakeStore = Callable[..., TaskStore]
GONE = "abandoned by its worker"
STALE_ERROR = {"code": -32603, "message": GONE}


def assert_failed_stale(store: TaskStore, record: TaskRecord) -> None:
    """``record``'s task is failed by a pass: -32603 error and statusMessage ``GONE``."""
    now = store.get(record.task_id, record.owner)
    assert (now.status, now.task.status_message) == (TaskStatus.FAILED, GONE)
    assert store.get_result(record.task_id, record.owner).error == STALE_ERROR


def assert_untouched(store: TaskStore, record: TaskRecord) -> None:
    """``record``'s task is exactly as it was (same version, status and stamps)."""
    now = store.get(record.task_id, record.owner)
    assert (now.version, now.status, now.task.last_updated_at) == (
        record.version,
        record.status,
        record.task.last_updated_at,
    )


@pytest.fixture(params=[None, "alice"], ids=["all-owners", "one-owner"])
def scope(request: pytest.FixtureRequest) -> str | None:
    """The ``owner`` argument of the pass under test: every owner (the backend's scan) or
    alice (her listing)."""
    value: str | None = request.param
    return value


# -- touch ---------------------------------------------------------------------------------


def test_touch_refreshes_only_last_updated_at(store: TaskStore, clock: ManualClock) -> None:
    """touch moves lastUpdatedAt to the store's now and changes nothing else, in working and
    input_required alike."""
    record = store.create("alice", status_message="running")
    store.set_variables(record.task_id, "alice", {"k": 1})
    clock.advance(5_000)
    touched = store.touch(record.task_id, "alice")
    assert touched.task.last_updated_at == format_timestamp(T0 + 5_000)
    assert touched.version == 3
    assert (touched.status, touched.task.status_message, touched.variables) == (
        TaskStatus.WORKING,
        "running",
        {"k": 1},
    )
    assert store.get(record.task_id, "alice") == touched

    store.update_status(record.task_id, "alice", TaskStatus.INPUT_REQUIRED, "need input")
    clock.advance(1_000)
    touched = store.touch(record.task_id, "alice")
    assert touched.status is TaskStatus.INPUT_REQUIRED
    assert touched.task.last_updated_at == format_timestamp(T0 + 6_000)


def test_touch_refuses_terminal_tasks(store: TaskStore) -> None:
    """A completed, failed or cancelled task cannot be touched (InvalidTransitionError) and is
    left as it was."""
    finishers: list[Callable[[str], Any]] = [
        lambda task_id: store.complete(task_id, "alice", 1),
        lambda task_id: store.fail(task_id, "alice", message="no"),
        lambda task_id: store.cancel(task_id, "alice"),
    ]
    for finish in finishers:
        task_id = store.create("alice").task_id
        done = finish(task_id)
        with pytest.raises(InvalidTransitionError):
            store.touch(task_id, "alice")
        assert store.get(task_id, "alice").version == done.version


def test_touch_of_unknown_or_foreign_task_is_not_found(store: TaskStore) -> None:
    """touch is owner-scoped like every operation: another owner's task is TaskNotFoundError."""
    task_id = store.create("alice").task_id
    for owner, wanted in (("bob", task_id), ("alice", "no-such-task"), ("alice\ud800", task_id)):
        with pytest.raises(TaskNotFoundError):
            store.touch(wanted, owner)


def test_touch_sends_no_event(store: TaskStore) -> None:
    """A touch is not a change anyone waits for: even a watcher of every change hears the
    status change made after it, and nothing for the touch."""
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def watcher(record: TaskRecord) -> None:
        seen.append((record.task_id, record.status.value))
        done.set()

    task_id = store.create("alice").task_id
    store.watch(watcher, every_change=True)  # would also show an event without a new status
    store.touch(task_id, "alice")
    store.cancel(task_id, "alice")
    assert done.wait(10)
    assert wait_until(lambda: len(seen) >= 1)
    assert seen == [(task_id, "cancelled")]


# -- fail_stale: what is failed ----------------------------------------------------------------


def test_fail_stale_fails_exactly_the_stale_unfinished_tasks(
    store: TaskStore, clock: ManualClock, scope: str | None
) -> None:
    """Working and input_required tasks not updated for more than older_than_ms are failed with
    the -32603 error and statusMessage; fresh, touched and finished tasks are left alone; the
    count is exact, and a second pass finds nothing."""
    stale_working = store.create("alice")
    bobs = store.create("bob")
    stale_waiting = store.create("alice")
    store.update_status(stale_waiting.task_id, "alice", TaskStatus.INPUT_REQUIRED)
    touched = store.create("alice")
    completed = store.create("alice")
    store.complete(completed.task_id, "alice", {"ok": True})
    cancelled = store.create("alice")
    store.cancel(cancelled.task_id, "alice")
    clock.advance(10_000)
    store.touch(touched.task_id, "alice")
    fresh = store.create("alice")
    clock.advance(500)  # touched and fresh are 500 ms old, the others 10.5 s
    keep = [store.get(r.task_id, "alice") for r in (touched, completed, cancelled, fresh)]

    assert store.fail_stale(older_than_ms=1_000, message=GONE, owner=scope) == (
        3 if scope is None else 2
    )
    assert_failed_stale(store, stale_working)
    assert_failed_stale(store, stale_waiting)
    for record in keep:
        assert_untouched(store, record)
    if scope is None:
        assert_failed_stale(store, bobs)
    else:
        assert store.get(bobs.task_id, "bob").status is TaskStatus.WORKING
    assert store.fail_stale(older_than_ms=1_000, message=GONE, owner=scope) == 0


def test_fail_stale_age_is_strictly_more_than_older_than_ms(
    store: TaskStore, clock: ManualClock, scope: str | None
) -> None:
    """A task updated exactly older_than_ms ago is not stale yet; one millisecond later it is."""
    record = store.create("alice")
    clock.advance(5_000)
    assert store.fail_stale(older_than_ms=5_000, message=GONE, owner=scope) == 0
    assert store.get(record.task_id, "alice").status is TaskStatus.WORKING
    clock.advance(1)
    assert store.fail_stale(older_than_ms=5_000, message=GONE, owner=scope) == 1
    assert_failed_stale(store, record)


def test_fail_stale_filters_by_request_method(
    store: TaskStore, clock: ManualClock, scope: str | None
) -> None:
    """With request_method, only tasks created for that method are failed."""
    tool = store.create("alice", "tools/call")
    prompt = store.create("alice", "prompts/get")
    clock.advance(60_000)
    failed = store.fail_stale(
        older_than_ms=1_000, message=GONE, owner=scope, request_method="tools/call"
    )
    assert failed == 1
    assert_failed_stale(store, tool)
    assert store.get(prompt.task_id, "alice").status is TaskStatus.WORKING
    assert store.fail_stale(older_than_ms=1_000, message=GONE, owner=scope) == 1
    assert_failed_stale(store, prompt)


def test_fail_stale_over_every_owner_reaches_tricky_owners(
    store: TaskStore, clock: ManualClock
) -> None:
    """Without an owner, a pass fails the stale tasks of every owner, however its name is
    spelled, and only those."""
    stale = {owner: store.create(owner) for owner in TRICKY_OWNERS if owner not in ("", "local")}
    clock.advance(2_000)
    fresh = {owner: store.create(owner) for owner in stale}
    clock.advance(1_000)
    assert store.fail_stale(older_than_ms=1_500, message=GONE) == len(stale)
    for owner, record in stale.items():
        assert_failed_stale(store, record)
        assert store.get(fresh[owner].task_id, owner).status is TaskStatus.WORKING


def test_fail_stale_ignores_expired_tasks(store: TaskStore, clock: ManualClock) -> None:
    """An expired task is absent: a pass neither fails nor counts it."""
    store.create("alice", ttl_ms=1_000)
    clock.advance(5_000)
    assert store.fail_stale(older_than_ms=1_000, message=GONE) == 0
    assert store.fail_stale(older_than_ms=1_000, message=GONE, owner="alice") == 0


def test_fail_stale_pages_through_many_tasks(
    store: TaskStore, clock: ManualClock, scope: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With pages of 3, a pass still visits every task: 8 stale tasks of alice and 2 of bob
    are all failed (bob's only without an owner)."""
    monkeypatch.setattr(stale_module, "_PAGE", 3)
    alices = [store.create("alice") for _ in range(8)]
    bobs = [store.create("bob") for _ in range(2)]
    clock.advance(2_000)
    assert store.fail_stale(older_than_ms=1_000, message=GONE, owner=scope) == (
        10 if scope is None else 8
    )
    for record in alices + (bobs if scope is None else []):
        assert_failed_stale(store, record)


def test_fail_stale_publishes_status_events(store: TaskStore, clock: ManualClock) -> None:
    """A task failed by a pass is announced like any failure, so a tool still running it (in
    any process) hears of it."""
    seen: list[tuple[str, str, str | None]] = []

    def watcher(record: TaskRecord) -> None:
        seen.append((record.task_id, record.status.value, record.task.status_message))

    task_id = store.create("alice").task_id
    store.watch(watcher)
    clock.advance(2_000)
    assert store.fail_stale(older_than_ms=1_000, message=GONE) == 1
    assert wait_until(lambda: len(seen) >= 1, timeout=10)
    assert seen == [(task_id, "failed", GONE)]


# -- fail_stale: races with the task's own writers ---------------------------------------------


class _Meddler:
    """Wraps a backend's scan and listing so that, right after a page is read, the tasks the
    test names are touched, finished or deleted: what a live worker or an expiry does between
    a pass picking a task and failing it."""

    def __init__(self, store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.actions: list[Callable[[], Any]] = []
        backend = store.backend
        for name in ("scan", "list_by_prefix"):
            original = getattr(backend, name)
            monkeypatch.setattr(backend, name, self._wrap(original))

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def meddling(*args: Any, **kwargs: Any) -> Any:
            page = original(*args, **kwargs)
            actions, self.actions = self.actions, []
            for action in actions:
                action()
            return page

        return meddling


def test_fail_stale_skips_tasks_changed_after_they_were_picked(
    store: TaskStore, clock: ManualClock, scope: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task touched, completed or deleted between the page that picked it and its
    compare-and-set is skipped: not failed, not counted, no error; the others are failed."""
    touched, completed, deleted, abandoned = (store.create("alice") for _ in range(4))
    clock.advance(2_000)
    meddler = _Meddler(store, monkeypatch)
    meddler.actions = [
        lambda: store.touch(touched.task_id, "alice"),
        lambda: store.complete(completed.task_id, "alice", "done"),
        lambda: store.backend.delete(("alice", deleted.task_id)),
    ]
    assert store.fail_stale(older_than_ms=1_000, message=GONE, owner=scope) == 1
    assert_failed_stale(store, abandoned)
    assert store.get(touched.task_id, "alice").status is TaskStatus.WORKING
    assert store.get(completed.task_id, "alice").status is TaskStatus.COMPLETED
    with pytest.raises(TaskNotFoundError):
        store.get(deleted.task_id, "alice")


def test_fail_stale_restarts_an_owner_listing_whose_anchor_vanished(
    store: TaskStore, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the task a listing page would start after is deleted mid-pass, the owner's listing
    starts over instead of failing: every other stale task is failed, each counted once."""
    monkeypatch.setattr(stale_module, "_PAGE", 2)
    records = [store.create("alice") for _ in range(5)]
    clock.advance(2_000)
    newest_first = sorted(records, key=lambda r: (r.created_at_ms, r.task_id), reverse=True)
    meddler = _Meddler(store, monkeypatch)
    # After the first page (the two newest), its last task vanishes: the next page's anchor.
    meddler.actions = [lambda: store.backend.delete(("alice", newest_first[1].task_id))]
    assert store.fail_stale(older_than_ms=1_000, message=GONE, owner="alice") == 4
    for record in newest_first[:1] + newest_first[2:]:
        assert_failed_stale(store, record)


# -- fail_stale: arguments and capabilities ------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        {"older_than_ms": -1},
        {"older_than_ms": True},
        {"older_than_ms": 1.5},
        {"message": None},
        {"message": 5},
        {"message": "x" * 5_000},
        {"owner": 5},
        {"request_method": 5},
    ],
)
def test_fail_stale_refuses_bad_arguments(store: TaskStore, arguments: dict[str, Any]) -> None:
    """A negative or non-integer age, a message that is not text or over the statusMessage
    cap, an owner or method that is not text: InvalidParamsError, nothing failed."""
    record = store.create("alice")
    call: dict[str, Any] = {"older_than_ms": 0, "message": GONE, **arguments}
    with pytest.raises(InvalidParamsError):
        store.fail_stale(**call)
    assert store.get(record.task_id, "alice").status is TaskStatus.WORKING


def test_fail_stale_for_an_owner_no_key_can_hold_finds_nothing(store: TaskStore) -> None:
    """An owner with a lone surrogate owns nothing: 0, as for any owner without tasks."""
    assert store.fail_stale(older_than_ms=0, message=GONE, owner="mallory\ud800") == 0


class _NoScan:
    """An in-memory backend that does not declare the scan capability."""

    def __init__(self) -> None:
        self._inner = InMemoryBackend()

    def __getattr__(self, name: str) -> Any:
        if name == "scan":
            raise AttributeError(name)
        return getattr(self._inner, name)


@pytest.fixture
def noscan_store(clock: ManualClock) -> Iterator[TaskStore]:
    """A store over a backend without ``scan``."""
    with TaskStore(_NoScan(), clock=clock) as made:  # type: ignore[arg-type]
        yield made


def test_fail_stale_across_owners_needs_the_scan_capability(
    noscan_store: TaskStore, clock: ManualClock
) -> None:
    """On a backend that cannot scan, a pass over every owner is a ConfigurationError naming the
    backend and the capability; a pass over one owner still works."""
    assert not isinstance(noscan_store.backend, ScanningBackend)
    record = noscan_store.create("alice")
    clock.advance(2_000)
    with pytest.raises(ConfigurationError, match=r"_NoScan.*ScanningBackend"):
        noscan_store.fail_stale(older_than_ms=1_000, message=GONE)
    assert noscan_store.fail_stale(older_than_ms=1_000, message=GONE, owner="alice") == 1
    assert_failed_stale(noscan_store, record)
