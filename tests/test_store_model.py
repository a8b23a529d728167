"""A hypothesis RuleBasedStateMachine drives the store against a simple model.

Random create / status updates / variables / complete / fail / cancel / list / clock moves; after
every step the store must agree with the model on every task's visibility, status, variables and
outcome.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from taskstore import (
    InvalidTransitionError,
    ManualClock,
    NotReadyError,
    QuotaExceededError,
    SecurityConfig,
    StoreConfig,
    TaskCancelledError,
    TaskNotFoundError,
    TaskStatus,
    TaskStore,
)
from taskstore.backends.memory import InMemoryBackend
from taskstore.states import can_transition
from taskstore.testing import T0

OWNERS = ["a", "a:", "b"]
QUOTA = 4
_values = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)


class _Model(msgspec.Struct):
    owner: str
    status: TaskStatus
    expires_at: int
    variables: dict[str, Any]
    outcome: tuple[str, Any] | None = None


class StoreMachine(RuleBasedStateMachine):
    """Compares TaskStore on the memory backend with a dictionary model."""

    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(T0)
        self.store = TaskStore(
            InMemoryBackend(stripes=4),
            config=StoreConfig(min_ttl_ms=1),
            security=SecurityConfig(max_tasks_per_owner=QUOTA),
            clock=self.clock,
        )
        self.model: dict[str, _Model] = {}

    def _live(self, task_id: str) -> _Model | None:
        entry = self.model.get(task_id)
        if entry is None or entry.expires_at <= self.clock.now_ms():
            return None
        return entry

    def _live_count(self, owner: str) -> int:
        return sum(1 for t in self.model if self._live(t) and self.model[t].owner == owner)

    @rule(target=tasks, owner=st.sampled_from(OWNERS), ttl=st.integers(1, 5_000))
    def create(self, owner: str, ttl: int) -> str:
        if self._live_count(owner) >= QUOTA:
            try:
                self.store.create(owner, ttl_ms=ttl)
            except QuotaExceededError:
                return "none"
            raise AssertionError("quota not enforced")
        record = self.store.create(owner, ttl_ms=ttl)
        self.model[record.task_id] = _Model(
            owner, TaskStatus.WORKING, self.clock.now_ms() + ttl, {}
        )
        return record.task_id

    def _attempt(self, task_id: str, owner: str, target: TaskStatus, call: Any) -> None:
        entry = self._live(task_id)
        if entry is None or entry.owner != owner:
            try:
                call()
            except TaskNotFoundError:
                return
            raise AssertionError("invisible task was changed")
        if not can_transition(entry.status, target):
            try:
                call()
            except InvalidTransitionError:
                return
            raise AssertionError("invalid transition accepted")
        call()
        entry.status = target

    @rule(
        task=tasks,
        owner=st.sampled_from(OWNERS),
        status=st.sampled_from([TaskStatus.WORKING, TaskStatus.INPUT_REQUIRED]),
    )
    def update_status(self, task: str, owner: str, status: TaskStatus) -> None:
        self._attempt(
            task, owner, status, lambda: self.store.update_status(task, owner, status, "m")
        )

    @rule(task=tasks, owner=st.sampled_from(OWNERS), result=_values)
    def complete(self, task: str, owner: str, result: Any) -> None:
        self._attempt(
            task, owner, TaskStatus.COMPLETED, lambda: self.store.complete(task, owner, result)
        )
        entry = self._live(task)
        if entry is not None and entry.status is TaskStatus.COMPLETED and entry.outcome is None:
            entry.outcome = ("result", result)

    @rule(task=tasks, owner=st.sampled_from(OWNERS), code=st.integers(-32700, -32000))
    def fail(self, task: str, owner: str, code: int) -> None:
        error = {"code": code, "message": "failed"}
        self._attempt(task, owner, TaskStatus.FAILED, lambda: self.store.fail(task, owner, error))
        entry = self._live(task)
        if entry is not None and entry.status is TaskStatus.FAILED and entry.outcome is None:
            entry.outcome = ("error", error)

    @rule(task=tasks, owner=st.sampled_from(OWNERS))
    def cancel(self, task: str, owner: str) -> None:
        self._attempt(task, owner, TaskStatus.CANCELLED, lambda: self.store.cancel(task, owner))

    @rule(
        task=tasks,
        owner=st.sampled_from(OWNERS),
        updates=st.dictionaries(st.sampled_from(["x", "y", "z"]), _values, max_size=3),
    )
    def set_variables(self, task: str, owner: str, updates: dict[str, Any]) -> None:
        entry = self._live(task)
        if entry is None or entry.owner != owner:
            try:
                self.store.set_variables(task, owner, updates)
            except TaskNotFoundError:
                return
            raise AssertionError("invisible task was changed")
        self.store.set_variables(task, owner, updates)
        for key, value in updates.items():
            if value is None:
                entry.variables.pop(key, None)
            else:
                entry.variables[key] = value

    @rule(ms=st.integers(0, 3_000))
    def advance_clock(self, ms: int) -> None:
        self.clock.advance(ms)

    @rule()
    def cleanup(self) -> None:
        expired = sum(1 for t in self.model if self._live(t) is None)
        assert self.store.cleanup_expired() <= expired

    @invariant()
    def store_matches_model(self) -> None:
        for task_id, entry in self.model.items():
            live = self._live(task_id)
            for owner in OWNERS:
                if live is None or owner != entry.owner:
                    try:
                        self.store.get(task_id, owner)
                    except TaskNotFoundError:
                        continue
                    raise AssertionError("expired or foreign task visible")
                record = self.store.get(task_id, owner)
                assert record.status is entry.status
                assert record.variables == entry.variables
                self._check_outcome(task_id, owner, entry)

    def _check_outcome(self, task_id: str, owner: str, entry: _Model) -> None:
        try:
            outcome = self.store.get_result(task_id, owner)
        except TaskCancelledError:
            assert entry.status is TaskStatus.CANCELLED
            return
        except NotReadyError:
            assert not entry.status.is_terminal
            return
        assert entry.outcome is not None
        kind, value = entry.outcome
        assert outcome.kind == kind
        assert (outcome.result if kind == "result" else outcome.error) == value

    @invariant()
    def listing_matches_model(self) -> None:
        for owner in OWNERS:
            listed: list[str] = []
            cursor = None
            while True:
                page = self.store.list(owner, cursor, limit=3)
                listed.extend(r.task_id for r in page.tasks)
                cursor = page.next_cursor
                if cursor is None:
                    break
            expected = {t for t, e in self.model.items() if self._live(t) and e.owner == owner}
            assert len(listed) == len(set(listed))
            assert set(listed) == expected


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
