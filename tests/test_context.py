"""TaskContext: the handler's handle on its task."""

from __future__ import annotations

import pytest

from taskstore import InvalidTransitionError, TaskContext, TaskStatus, TaskStore

OWNER = "alice"


@pytest.fixture
def ctx(store: TaskStore) -> TaskContext:
    """A context on a fresh working task."""
    return TaskContext(store, store.create(OWNER).task_id, OWNER)


def test_variables_get_set_delete(ctx: TaskContext) -> None:
    """set/get/delete variables go through the store."""
    ctx.set_variable("a", 1)
    ctx.set_variables({"b": "two", "c": [3]})
    assert ctx.get_variable("a") == 1
    assert ctx.get_variable("missing", "dflt") == "dflt"
    ctx.delete_variable("a")
    assert ctx.variables == {"b": "two", "c": [3]}


def test_typed_getters_keep_bool_apart_from_int(ctx: TaskContext) -> None:
    """get_int refuses booleans, get_bool refuses integers, get_float takes ints not bools."""
    ctx.set_variables({"i": 3, "t": True, "f": 1.5, "s": "x", "l": [1], "d": {"k": 1}, "one": 1})
    assert ctx.get_int("i") == 3
    assert ctx.get_int("t") is None
    assert ctx.get_int("f") is None
    assert ctx.get_bool("t") is True
    assert ctx.get_bool("one") is None
    assert ctx.get_bool("missing", False) is False
    assert ctx.get_float("f") == 1.5
    assert ctx.get_float("i") == 3.0 and isinstance(ctx.get_float("i"), float)
    assert ctx.get_float("t") is None
    assert ctx.get_str("s") == "x" and ctx.get_str("i") is None
    assert ctx.get_list("l") == [1] and ctx.get_list("d") is None
    assert ctx.get_dict("d") == {"k": 1} and ctx.get_dict("l", {}) == {}


def test_lifecycle_through_context(ctx: TaskContext) -> None:
    """require_input, resume and complete move the task; the result is stored."""
    assert ctx.require_input("confirm?").status is TaskStatus.INPUT_REQUIRED
    assert ctx.resume().status is TaskStatus.WORKING
    assert ctx.set_message("half").task.status_message == "half"
    assert ctx.complete({"ok": 1}).status is TaskStatus.COMPLETED
    assert ctx.store.get_result(ctx.task_id, OWNER).result == {"ok": 1}
    with pytest.raises(InvalidTransitionError):
        ctx.fail(message="late")


def test_fail_through_context(ctx: TaskContext) -> None:
    """fail records the error outcome."""
    ctx.fail({"code": -32000, "message": "nope"})
    assert ctx.status is TaskStatus.FAILED
    assert ctx.store.get_result(ctx.task_id, OWNER).error == {"code": -32000, "message": "nope"}


def test_cancelled_flag(ctx: TaskContext, store: TaskStore) -> None:
    """cancelled turns true once the task is cancelled by anyone."""
    assert ctx.cancelled is False
    store.cancel(ctx.task_id, OWNER)
    assert ctx.cancelled is True


def test_cancel_through_context(ctx: TaskContext) -> None:
    """ctx.cancel cancels the task."""
    ctx.cancel()
    assert ctx.cancelled and ctx.status is TaskStatus.CANCELLED


def test_cancelled_when_task_gone(store: TaskStore, clock: object) -> None:
    """A context whose task no longer exists reports cancelled, so the handler stops."""
    ctx = TaskContext(store, "no-such-task", OWNER)
    assert ctx.cancelled is True
