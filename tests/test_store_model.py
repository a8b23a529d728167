"""A hypothesis RuleBasedStateMachine drives the store against a simple model, on every backend.

Random create / read / status updates with messages / ``set_message`` / ``set_variables`` /
``update_variables`` / complete / fail / cancel / delete (through the backend) / clock moves /
cleanup / listing with cursors kept across steps, by the task's owner or by another one (owners
like ``"a"`` and ``"a:"`` share prefixes). After every step the store must agree with the model
on each task's visibility, status, message, variables, version, timestamps and outcome, and on
every owner's full listing order. The same machine runs unchanged on every row of
``support.backends.BACKEND_PARAMS``; only the example budget differs per row.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any
from unittest import mock

import msgspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from taskstore import (
    InvalidCursorError,
    InvalidTransitionError,
    ManualClock,
    NotReadyError,
    QuotaExceededError,
    SecurityConfig,
    StoreConfig,
    TaskCancelledError,
    TaskNotFoundError,
    TaskPage,
    TaskRecord,
    TaskStatus,
    TaskStore,
)
from taskstore.backends.base import StorageBackend
from taskstore.clock import format_timestamp
from taskstore.states import can_transition
from taskstore.testing import T0

# "a" and "a:" (and "{a}#") catch key encodings that are not injective: a ':' separator, a
# Redis Cluster hash tag, DynamoDB's "OWNER#" prefix.
OWNERS = ["a", "a:", "b", "{a}#"]
QUOTA = 3
DEFAULT_TTL_MS = 3_600_000
UNKNOWN_TASK = "no-such-task"
_values = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
_messages = st.none() | st.sampled_from(["", "m", "é"])
_owners = st.sampled_from(OWNERS)
# Who makes a call: None is the task's (or cursor's) own owner, so that most calls reach the
# task; otherwise any owner, often a foreign one, which must see nothing.
_callers = st.none() | _owners
# Round TTLs, and clock moves that often land exactly on the next expiry (None): the boundary,
# where a task whose expiry equals the clock is gone, is where off-by-one bugs live.
_ttls = st.none() | st.sampled_from([0, 1, 1_000, 2_000]) | st.integers(0, 10_000)
_moves = st.none() | st.sampled_from([0, 1, 999, 1_000]) | st.integers(0, 4_000)
_canonical = msgspec.json.Encoder(order="sorted")


def _same(left: Any, right: Any) -> bool:
    """Equal as JSON, types included (``True`` is not ``1``)."""
    return _canonical.encode(left) == _canonical.encode(right)


# update_variables callbacks: pure functions of the task's current variables.
def _count(variables: dict[str, Any]) -> dict[str, Any] | None:
    n = variables.get("n")
    return {"n": (n if type(n) is int else 0) + 1}


def _swap(variables: dict[str, Any]) -> dict[str, Any] | None:
    return {"x": variables.get("y"), "y": variables.get("x")}


def _clear(variables: dict[str, Any]) -> dict[str, Any] | None:
    return dict.fromkeys(variables)


def _keep(variables: dict[str, Any]) -> dict[str, Any] | None:
    return None


UPDATES: dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]] = {
    "count": _count,
    "swap": _swap,
    "clear": _clear,
    "keep": _keep,
}


def _merge(variables: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if value is None:
            variables.pop(key, None)
        else:
            variables[key] = value


class _Model(msgspec.Struct):
    owner: str
    created_ms: int
    ttl: int
    updated_ms: int
    message: str | None
    status: TaskStatus = TaskStatus.WORKING
    variables: dict[str, Any] = {}
    outcome: tuple[str, Any] | None = None
    version: int = 1
    #: Not removed by ``delete`` or ``cleanup_expired`` (it may have expired).
    stored: bool = True
    #: A create ran after this task had expired, so the backend may already have reclaimed
    #: it: memory's create purges its lock stripe (owners share stripes by ``hash()``), Redis's
    #: the creating owner's expired records, DynamoDB's nothing.
    maybe_reclaimed: bool = False

    @property
    def expires_at(self) -> int:
        return self.created_ms + self.ttl


class _Cursor(msgspec.Struct, frozen=True):
    """Where a listing stopped: its ``next_cursor`` and the id of the page's last task."""

    owner: str
    cursor: str
    anchor: str


class StoreMachine(RuleBasedStateMachine):
    """Compares a TaskStore over a fresh backend from ``factory`` with a dictionary model."""

    tasks = Bundle("tasks")
    cursors = Bundle("cursors")

    def __init__(self, factory: Callable[[], StorageBackend]) -> None:
        super().__init__()
        self.clock = ManualClock(T0)
        self.store = TaskStore(
            factory(),
            config=StoreConfig(min_ttl_ms=1, default_ttl_ms=DEFAULT_TTL_MS),
            security=SecurityConfig(max_tasks_per_owner=QUOTA),
            clock=self.clock,
        )
        self.model: dict[str, _Model] = {}
        # Task ids decide the order of tasks created in the same millisecond, so which task
        # ends a page and whether a page leaves a cursor for later steps. Drawn from a generator
        # seeded by the example, every example replays exactly (or hypothesis could neither
        # shrink nor replay it) while the ids still vary.
        self._ids = random.Random(0)
        self._patch = mock.patch("taskstore.store._new_task_id", self._next_id)
        self._patch.start()

    def _next_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    @initialize(seed=st.integers(0, 2**32 - 1))
    def seed_task_ids(self, seed: int) -> None:
        self._ids.seed(seed)

    def teardown(self) -> None:
        self._patch.stop()
        self.store.close()

    # -- model queries ----------------------------------------------------------------------

    def _live(self, task_id: str) -> _Model | None:
        entry = self.model.get(task_id)
        if entry is None or not entry.stored or entry.expires_at <= self.clock.now_ms():
            return None
        return entry

    def _caller(self, task_id: str, owner: str | None) -> str:
        if owner is not None:
            return owner
        entry = self.model.get(task_id)
        return OWNERS[0] if entry is None else entry.owner

    def _visible(self, task_id: str, owner: str) -> _Model | None:
        entry = self._live(task_id)
        return entry if entry is not None and entry.owner == owner else None

    def _expired_stored(self) -> list[_Model]:
        """Tasks expired by the store's clock and not yet removed by delete or cleanup."""
        now = self.clock.now_ms()
        return [e for e in self.model.values() if e.stored and e.expires_at <= now]

    def _order(self, owner: str) -> list[str]:
        """The owner's live tasks as ``list`` must return them: newest first, then task id
        descending (the backend contract's keyset order)."""
        live = [(e.created_ms, t) for t, e in self.model.items() if self._visible(t, owner)]
        return [task_id for _, task_id in sorted(live, reverse=True)]

    def _check_record(self, record: TaskRecord, entry: _Model) -> None:
        assert record.owner == entry.owner
        assert record.status is entry.status
        assert record.task.status_message == entry.message
        assert _same(record.variables, entry.variables)
        assert record.version == entry.version
        assert record.created_at_ms == entry.created_ms
        assert record.expires_at_ms == entry.expires_at
        assert record.task.ttl == entry.ttl
        assert record.task.created_at == format_timestamp(entry.created_ms)
        assert record.task.last_updated_at == format_timestamp(entry.updated_ms)

    def _check_outcome(self, task_id: str, owner: str, entry: _Model) -> None:
        try:
            outcome = self.store.get_result(task_id, owner)
        except TaskCancelledError:
            assert entry.status is TaskStatus.CANCELLED
            return
        except NotReadyError:
            assert not entry.status.is_terminal
            return
        assert entry.status in (TaskStatus.COMPLETED, TaskStatus.FAILED)
        assert entry.outcome is not None
        kind, value = entry.outcome
        assert outcome.kind == kind
        assert _same(outcome.result if kind == "result" else outcome.error, value)

    def _wrote(self, entry: _Model, record: TaskRecord) -> None:
        """Account for one successful write and check the record the store returned."""
        entry.version += 1
        entry.updated_ms = self.clock.now_ms()
        self._check_record(record, entry)

    # -- creating and reading ---------------------------------------------------------------

    @rule(
        target=tasks,
        owner=_owners,
        ttl=_ttls,
        message=_messages,
        count=st.integers(1, 3),
    )
    def create(self, owner: str, ttl: int | None, message: str | None, count: int) -> Any:
        """Create ``count`` tasks at the same instant (their listing order is by task id)."""
        created = []
        for _ in range(count):
            for entry in self._expired_stored():
                entry.maybe_reclaimed = True  # even if the quota refuses the create
            live = sum(1 for t, e in self.model.items() if self._live(t) and e.owner == owner)
            if live >= QUOTA:
                with pytest.raises(QuotaExceededError):
                    self.store.create(owner, ttl_ms=ttl, status_message=message)
                created.append(UNKNOWN_TASK)  # later steps also use an id that never existed
                continue
            record = self.store.create(owner, ttl_ms=ttl, status_message=message)
            now = self.clock.now_ms()
            entry = _Model(
                owner,
                created_ms=now,
                ttl=DEFAULT_TTL_MS if ttl is None else max(ttl, 1),  # min_ttl_ms=1 clamps 0 up
                updated_ms=now,
                message=message,
            )
            self._check_record(record, entry)
            self.model[record.task_id] = entry
            created.append(record.task_id)
        return multiple(*created)

    @rule(task=tasks, owner=_callers)
    def read(self, task: str, owner: str | None) -> None:
        owner = self._caller(task, owner)
        entry = self._visible(task, owner)
        if entry is None:  # unknown, expired, deleted, cleaned up, or another owner's
            with pytest.raises(TaskNotFoundError):
                self.store.get(task, owner)
            with pytest.raises(TaskNotFoundError):
                self.store.get_result(task, owner)
            return
        self._check_record(self.store.get(task, owner), entry)
        self._check_outcome(task, owner, entry)

    # -- mutations --------------------------------------------------------------------------

    def _move(
        self,
        task: str,
        owner: str,
        target: TaskStatus,
        call: Callable[[], TaskRecord],
        message: str | None,
        outcome: tuple[str, Any] | None = None,
    ) -> None:
        entry = self._visible(task, owner)
        if entry is None:
            with pytest.raises(TaskNotFoundError):
                call()
            return
        if entry.status is target and target.is_terminal:
            # Finishing again: the same outcome is a repeat (idempotent, nothing written),
            # another one is refused like any move out of a terminal status.
            same = target is TaskStatus.CANCELLED or (
                entry.outcome is not None
                and outcome is not None
                and entry.outcome[0] == outcome[0]
                and _same(entry.outcome[1], outcome[1])
            )
            if not same:
                with pytest.raises(InvalidTransitionError):
                    call()
                return
            self._check_record(call(), entry)
            return
        if not can_transition(entry.status, target):
            with pytest.raises(InvalidTransitionError):
                call()
            return
        record = call()
        entry.status = target
        entry.message = message
        if outcome is not None:
            entry.outcome = outcome
        self._wrote(entry, record)

    @rule(task=tasks, owner=_callers, status=st.sampled_from(TaskStatus), message=_messages)
    def update_status(
        self, task: str, owner: str | None, status: TaskStatus, message: str | None
    ) -> None:
        who = self._caller(task, owner)
        # Terminal targets go through complete (null result) / fail (-32603) / cancel.
        outcome: tuple[str, Any] | None = None
        expected_message = message
        if status is TaskStatus.COMPLETED:
            outcome = ("result", None)
        elif status is TaskStatus.FAILED:
            outcome = ("error", {"code": -32603, "message": message or "Task failed"})
            expected_message = "Task failed" if message is None else message
        self._move(
            task,
            who,
            status,
            lambda: self.store.update_status(task, who, status, message),
            expected_message,
            outcome,
        )

    @rule(task=tasks, owner=_callers, message=_messages)
    def set_message(self, task: str, owner: str | None, message: str | None) -> None:
        owner = self._caller(task, owner)
        entry = self._visible(task, owner)
        if entry is None:
            with pytest.raises(TaskNotFoundError):
                self.store.set_message(task, owner, message)
            return
        if entry.status.is_terminal:  # refused: a terminal task's message is final
            with pytest.raises(InvalidTransitionError):
                self.store.set_message(task, owner, message)
            return
        record = self.store.set_message(task, owner, message)
        entry.message = message
        self._wrote(entry, record)

    @rule(task=tasks, owner=_callers, result=_values, message=_messages)
    def complete(self, task: str, owner: str | None, result: Any, message: str | None) -> None:
        who = self._caller(task, owner)
        self._move(
            task,
            who,
            TaskStatus.COMPLETED,
            lambda: self.store.complete(task, who, result, message=message),
            message,
            ("result", result),
        )

    @rule(
        task=tasks,
        owner=_callers,
        kind=st.sampled_from(["error", "result", "neither"]),
        code=st.integers(-32700, -32000),
        result=_values.filter(lambda value: value is not None),
        message=_messages,
    )
    def fail(
        self,
        task: str,
        owner: str | None,
        kind: str,
        code: int,
        result: Any,
        message: str | None,
    ) -> None:
        who = self._caller(task, owner)
        call: Callable[[], TaskRecord]
        outcome: tuple[str, Any]
        expected_message: str | None
        if kind == "error":  # the request failed with a JSON-RPC error
            error = {"code": code, "message": "failed"}
            outcome = ("error", error)
            expected_message = "failed" if message is None else message
            call = lambda: self.store.fail(task, who, error, message=message)  # noqa: E731
        elif kind == "result":  # e.g. a CallToolResult with isError
            outcome = ("result", result)
            expected_message = message
            call = lambda: self.store.fail(task, who, message=message, result=result)  # noqa: E731
        else:
            outcome = ("error", {"code": -32603, "message": message or "Task failed"})
            expected_message = "Task failed" if message is None else message
            call = lambda: self.store.fail(task, who, message=message)  # noqa: E731
        self._move(task, who, TaskStatus.FAILED, call, expected_message, outcome)

    @rule(task=tasks, owner=_callers, message=_messages)
    def cancel(self, task: str, owner: str | None, message: str | None) -> None:
        who = self._caller(task, owner)
        self._move(
            task,
            who,
            TaskStatus.CANCELLED,
            lambda: self.store.cancel(task, who, message),
            message,
        )

    @rule(
        task=tasks,
        owner=_callers,
        updates=st.dictionaries(st.sampled_from(["x", "y", "z"]), _values, max_size=3),
    )
    def set_variables(self, task: str, owner: str | None, updates: dict[str, Any]) -> None:
        owner = self._caller(task, owner)
        entry = self._visible(task, owner)
        if entry is None:
            with pytest.raises(TaskNotFoundError):
                self.store.set_variables(task, owner, updates)
            return
        record = self.store.set_variables(task, owner, updates)  # terminal tasks too
        _merge(entry.variables, updates)
        self._wrote(entry, record)

    @rule(task=tasks, owner=_callers, update=st.sampled_from(sorted(UPDATES)))
    def update_variables(self, task: str, owner: str | None, update: str) -> None:
        who = self._caller(task, owner)
        function = UPDATES[update]

        def call() -> TaskRecord:
            return self.store.update_variables(
                task, who, lambda record: function(dict(record.variables))
            )

        entry = self._visible(task, who)
        if entry is None:
            with pytest.raises(TaskNotFoundError):
                call()
            return
        record = call()
        changes = function(dict(entry.variables))
        if changes is None:  # nothing written: the current record comes back as it is
            self._check_record(record, entry)
            return
        _merge(entry.variables, changes)
        self._wrote(entry, record)

    @rule(task=tasks, owner=_callers)
    def delete(self, task: str, owner: str | None) -> None:
        # TaskStore has no delete; the backend's delete(key) is public (store.backend, the
        # documented contract of DESIGN §6). It removes the record if it is still stored,
        # expired or not, and never touches another owner's record with the same task id. No
        # backend reclaims natively within an example (Redis waits reclaim_delay_ms = 60 s; the
        # test tables have TTL off), but a create may have reclaimed an expired record.
        owner = self._caller(task, owner)
        entry = self.model.get(task)
        removed = self.store.backend.delete((owner, task))
        if entry is None or not entry.stored or entry.owner != owner:
            assert removed is False
            return
        assert removed is True or (entry.maybe_reclaimed and removed is False)
        entry.stored = False

    @rule(ms=_moves)
    def advance_clock(self, ms: int | None) -> None:
        now = self.clock.now_ms()
        if ms is None:  # exactly to the next expiry, if any
            ms = min(
                (e.expires_at - now for e in self.model.values() if e.expires_at > now), default=0
            )
        self.clock.advance(ms)

    @precondition(lambda self: self._expired_stored())
    @rule()
    def cleanup(self) -> None:
        # cleanup_expired counts what *it* removes: every expired task not removed earlier by
        # delete or cleanup, except those a create has already reclaimed (the exact count then
        # depends on the backend: see _Model.maybe_reclaimed). Exact whenever no create ran
        # since the tasks expired; otherwise between the certain and the possible count.
        due = self._expired_stored()
        certain = sum(1 for entry in due if not entry.maybe_reclaimed)
        removed = self.store.cleanup_expired()
        if certain == len(due):
            assert removed == len(due)
        else:
            assert certain <= removed <= len(due)
        for entry in due:
            entry.stored = False

    # -- listing ----------------------------------------------------------------------------

    def _check_page(
        self, owner: str, page: TaskPage, expected: list[str], limit: int
    ) -> _Cursor | None:
        """Check one page against the model; return where it stopped (None at the end)."""
        assert [r.task_id for r in page.tasks] == expected[:limit]
        for record in page.tasks:
            self._check_record(record, self.model[record.task_id])
        if len(expected) <= limit:
            assert page.next_cursor is None
            return None
        assert page.next_cursor is not None
        return _Cursor(owner, page.next_cursor, expected[limit - 1])

    @precondition(lambda self: any(self._live(task_id) for task_id in self.model))
    @rule(target=cursors, owner=_callers, limit=st.integers(1, 3))
    def first_page(self, owner: str | None, limit: int) -> Any:
        if owner is None:  # the owner with the most live tasks: most pages end in a cursor
            owner = max(OWNERS, key=lambda o: len(self._order(o)))
        page = self.store.list(owner, limit=limit)
        cursor = self._check_page(owner, page, self._order(owner), limit)
        return multiple() if cursor is None else cursor

    @rule(target=cursors, cursor=cursors, owner=_callers, limit=st.integers(1, 3))
    def next_page(self, cursor: _Cursor, owner: str | None, limit: int) -> Any:
        """Resume from a cursor taken at any earlier step, maybe by another owner."""
        owner = cursor.owner if owner is None else owner
        order = self._order(cursor.owner)
        if owner != cursor.owner or cursor.anchor not in order:
            # Another owner's cursor, or its last task expired or was removed since: refused,
            # never a silent restart.
            with pytest.raises(InvalidCursorError):
                self.store.list(owner, cursor.cursor, limit=limit)
            return multiple()
        rest = order[order.index(cursor.anchor) + 1 :]
        page = self.store.list(owner, cursor.cursor, limit=limit)
        following = self._check_page(owner, page, rest, limit)
        return multiple() if following is None else following

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def tasks_match_model(self) -> None:
        # Each task as its own owner; other owners' view is checked by every rule called by a
        # foreign owner (checking every owner after every step would multiply the round trips).
        for task_id, entry in self.model.items():
            if self._live(task_id) is None:
                with pytest.raises(TaskNotFoundError):
                    self.store.get(task_id, entry.owner)
                continue
            self._check_record(self.store.get(task_id, entry.owner), entry)
            self._check_outcome(task_id, entry.owner, entry)

    @invariant()
    def listings_match_model(self) -> None:
        # Paging with next_cursor visits every live task exactly once, in the model's order.
        for owner in OWNERS:
            expected = self._order(owner)
            listed: list[str] = []
            cursor = None
            while True:
                page = self.store.list(owner, cursor, limit=2)
                self._check_page(owner, page, expected[len(listed) :], 2)
                listed.extend(r.task_id for r in page.tasks)
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert listed == expected


#: (max_examples, stateful_step_count) per row of the backend table. Measured on two busy
#: cores: each row's call takes 1–5 s, the whole file 27–35 s with server start-up. moto is the
#: slowest per step (in-process HTTP mocking) and adds little next to DynamoDB Local. A row added
#: later gets the cautious default until it is measured.
BUDGETS: dict[str, tuple[int, int]] = {
    "memory": (200, 50),
    "fakeredis": (40, 30),
    "redis": (60, 30),
    "redis_cluster": (20, 20),
    "moto": (10, 20),
    "dynamodb_local": (15, 20),
    "sqlite": (60, 30),
    "postgres": (40, 25),
}
DEFAULT_BUDGET = (10, 15)


def test_store_matches_model(
    backend_factory: Callable[..., StorageBackend], backend_name: str
) -> None:
    """On every backend, the store agrees with the dictionary model after every random step."""
    examples, steps = BUDGETS.get(backend_name, DEFAULT_BUDGET)
    run_state_machine_as_test(
        lambda: StoreMachine(backend_factory),
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            # Server round trips make steps slow by design; the budgets above bound the time.
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            # No example database: nothing is written into the (shared) checkout, and a run
            # never depends on what earlier local runs failed on. Not derandomized either, so
            # each run explores new sequences; a failure prints its shrunk steps, a complete
            # reproduction (they start with the task-id seed), and `--hypothesis-seed=N`
            # replays a whole run.
            database=None,
        ),
    )
