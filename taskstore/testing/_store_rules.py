"""Store rules that hold only if the backend does its part: finishing a task again, the latest
expiry, the field caps, owners no key can hold. Shipped with the contract so every backend
runs them through a real :class:`~taskstore.store.TaskStore`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from taskstore.config import MAX_EXPIRES_AT_MS
from taskstore.errors import (
    InvalidCursorError,
    InvalidParamsError,
    InvalidTransitionError,
    TaskNotFoundError,
)
from taskstore.record import json_size
from taskstore.testing._support import T0

__all__ = ["StoreRulesContract"]

#: Text no record key can hold: a lone surrogate has no UTF-8 form.
UNENCODABLE = "mallory\ud800"


class StoreRulesContract:
    """The store's rules at the edges, over the backend under test.

    Subclasses provide a ``make_store`` fixture: ``make_store(**fields)`` returns a
    ``TaskStore`` over a fresh, empty backend of the kind under test, built with those
    :class:`~taskstore.config.StoreConfig` and :class:`~taskstore.security.SecurityConfig`
    fields and a :class:`~taskstore.clock.ManualClock` at :data:`T0`. (The store is built by
    the caller because the contract package sits below the store in the layering.)
    """

    # -- finishing again --------------------------------------------------------------------

    def test_finishing_again_with_the_same_outcome_returns_the_task(
        self, make_store: Callable[..., Any]
    ) -> None:
        """complete, fail (with an error or a result) and cancel repeated with the same
        outcome succeed and return the task as stored, outcome included, writing nothing."""
        store = make_store()
        calls: list[Callable[[str], Any]] = [
            lambda task_id: store.complete(task_id, "alice", {"n": [1, "✓"]}),
            lambda task_id: store.fail(task_id, "alice", {"code": -32000, "message": "no"}),
            lambda task_id: store.fail(task_id, "alice", result={"isError": True}),
            lambda task_id: store.cancel(task_id, "alice", "stop"),
        ]
        for finish in calls:
            task_id = store.create("alice").task_id
            first = finish(task_id)
            again = finish(task_id)
            assert (again.status, again.version) == (first.status, 2)
            assert again.outcome == first.outcome
            assert again.task.status_message == first.task.status_message
            assert store.get(task_id, "alice").version == 2

    def test_finishing_again_with_another_outcome_is_refused(
        self, make_store: Callable[..., Any]
    ) -> None:
        """A second finish with a different result, error or status is
        InvalidTransitionError and the first outcome stays."""
        store = make_store()
        task_id = store.create("alice").task_id
        store.complete(task_id, "alice", {"n": 1})
        others: tuple[Callable[[], Any], ...] = (
            lambda: store.complete(task_id, "alice", {"n": 2}),
            lambda: store.complete(task_id, "alice", {"n": 1.0}),  # other JSON, other bytes
            lambda: store.fail(task_id, "alice", result={"n": 1}),
            lambda: store.cancel(task_id, "alice"),
        )
        for other in others:
            with pytest.raises(InvalidTransitionError):
                other()
        assert store.get_result(task_id, "alice").result == {"n": 1}
        assert store.get(task_id, "alice").version == 2

    # -- the latest expiry ------------------------------------------------------------------

    def test_ttl_up_to_the_latest_expiry(self, make_store: Callable[..., Any]) -> None:
        """Without a maximum TTL, a task may live until MAX_EXPIRES_AT_MS exactly (stored and
        read back to the millisecond); a TTL reaching one millisecond further, or 2**60, is
        InvalidParamsError on every backend and creates nothing."""
        store = make_store(max_ttl_ms=None)
        longest = MAX_EXPIRES_AT_MS - T0
        record = store.create("alice", ttl_ms=longest)
        assert record.expires_at_ms == MAX_EXPIRES_AT_MS
        assert store.get(record.task_id, "alice").expires_at_ms == MAX_EXPIRES_AT_MS
        for ttl in (longest + 1, 2**60):
            with pytest.raises(InvalidParamsError):
                store.create("alice", ttl_ms=ttl)
        assert [t.task_id for t in store.list("alice").tasks] == [record.task_id]

    # -- caps -------------------------------------------------------------------------------

    def test_request_and_method_caps(self, make_store: Callable[..., Any]) -> None:
        """A request (as compact JSON) and a request method at their caps are stored; one
        byte more is InvalidParamsError and nothing is created."""
        store = make_store(max_request_bytes=100, max_request_method_bytes=8)
        request = {"arguments": "é" * 10}
        request["arguments"] += "x" * (100 - json_size(request))
        assert json_size(request) == 100
        stored = store.create("alice", "tools/ca", request=request)
        assert store.get(stored.task_id, "alice").request == request
        longer = {"arguments": request["arguments"] + "x"}
        bad_calls: tuple[Callable[[], Any], ...] = (
            lambda: store.create("alice", request=longer),
            lambda: store.create("alice", "tools/cal"),
            lambda: store.create("alice", "ü" * 5),  # 10 bytes
        )
        for bad in bad_calls:
            with pytest.raises(InvalidParamsError):
                bad()
        assert len(store.list("alice").tasks) == 1

    def test_status_message_cap(self, make_store: Callable[..., Any]) -> None:
        """A statusMessage of up to max_status_message_bytes (UTF-8) is kept; a longer one
        given to any write is InvalidParamsError and writes nothing; a message the store
        derives from a long error is cut to fit instead."""
        store = make_store(max_status_message_bytes=10)
        fits = "ü" * 5
        over = "ü" * 5 + "x"
        record = store.create("alice", status_message=fits)
        task_id = record.task_id
        assert record.task.status_message == fits
        writes: tuple[Callable[[], Any], ...] = (
            lambda: store.create("alice", status_message=over),
            lambda: store.set_message(task_id, "alice", over),
            lambda: store.update_status(task_id, "alice", "input_required", over),
            lambda: store.request_input(
                task_id, "alice", [{"method": "elicitation/create", "params": {}}], over
            ),
            lambda: store.complete(task_id, "alice", None, message=over),
            lambda: store.fail(task_id, "alice", message=over),
            lambda: store.cancel(task_id, "alice", over),
        )
        for write in writes:
            with pytest.raises(InvalidParamsError):
                write()
        assert store.get(task_id, "alice").version == 1
        assert len(store.list("alice").tasks) == 1
        failed = store.fail(task_id, "alice", {"code": -32000, "message": "ü" * 20})
        assert failed.task.status_message == fits  # cut at a character boundary
        assert store.get_result(task_id, "alice").error["message"] == "ü" * 20

    # -- owners no key can hold -------------------------------------------------------------

    def test_unencodable_owner_owns_nothing(self, make_store: Callable[..., Any]) -> None:
        """An owner with a lone surrogate cannot create (InvalidParamsError); every other
        operation answers as for an owner without tasks, and a task id no key can hold is
        an unknown task."""
        store = make_store()
        mine = store.create("alice")
        with pytest.raises(InvalidParamsError):
            store.create(UNENCODABLE)
        calls: tuple[Callable[[], Any], ...] = (
            lambda: store.get(mine.task_id, UNENCODABLE),
            lambda: store.get_result(mine.task_id, UNENCODABLE),
            lambda: store.set_variables(mine.task_id, UNENCODABLE, {"k": 1}),
            lambda: store.complete(mine.task_id, UNENCODABLE, None),
            lambda: store.cancel(mine.task_id, UNENCODABLE),
            lambda: store.wait(mine.task_id, UNENCODABLE, timeout=0),
            lambda: store.get("task\udfff", "alice"),
            lambda: store.cancel("task\udfff", "alice"),
        )
        for call in calls:
            with pytest.raises(TaskNotFoundError) as info:
                call()
            info.value.message.encode("utf-8")  # safe to send as JSON
        page = store.list(UNENCODABLE)
        assert (page.tasks, page.next_cursor) == ([], None)
        store.create("alice")
        cursor = store.list("alice", limit=1).next_cursor
        with pytest.raises(InvalidCursorError):
            store.list(UNENCODABLE, cursor=cursor)
        assert store.cleanup_expired() == 0
        assert store.get(mine.task_id, "alice").version == 1
