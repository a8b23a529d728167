"""A task's requests for client input kept in its record (DESIGN §9c; ``TaskStore.request_input``,
``answer_input``, ``take_input``, ``wait_for_change``), run unchanged over every backend of the
table. Races use real threads released by a barrier and skip on backends whose conditional
writes are not atomic (moto)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from taskstore import (
    InvalidParamsError,
    InvalidTransitionError,
    ManualClock,
    TaskStatus,
    TaskStore,
)
from taskstore.record import TaskRecord, decode_record
from taskstore.testing import T0, run_barrier_threads

OWNER = "alice"
STAMP0 = "2026-01-01T00:00:00.000Z"
STAMP1 = "2026-01-01T00:00:01.000Z"
STAMP2 = "2026-01-01T00:00:02.000Z"


def elicit(n: int) -> dict[str, Any]:
    """An ``elicitation/create`` input request asking question ``n``."""
    return {
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": f"Question {n}?",
            "requestedSchema": {
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
            },
        },
    }


def accept(value: Any) -> dict[str, Any]:
    """An accepting ``ElicitResult`` carrying ``value``."""
    return {"action": "accept", "content": {"answer": value}}


def asking(
    store: TaskStore, count: int, message: str | None = "Need input"
) -> tuple[str, list[str], int]:
    """A new task with ``count`` outstanding elicitations: its id, their keys, its version."""
    task_id = store.create(OWNER).task_id
    record, keys = store.request_input(
        task_id, OWNER, [elicit(n) for n in range(1, count + 1)], message
    )
    return task_id, keys, record.version


# -- keys ------------------------------------------------------------------------------------


def test_request_input_files_requests_under_ordered_keys(
    store: TaskStore, clock: ManualClock
) -> None:
    """request_input files the requests under input-1..n in order, moves the task to
    input_required with the message, stamps lastUpdatedAt, and the stored record equals the
    returned one."""
    created = store.create(OWNER)
    clock.advance(1_000)
    record, keys = store.request_input(
        created.task_id, OWNER, [elicit(1), elicit(2), elicit(3)], "Three questions"
    )
    assert keys == ["input-1", "input-2", "input-3"]
    assert record.status is TaskStatus.INPUT_REQUIRED
    assert record.task.status_message == "Three questions"
    assert record.task.last_updated_at == STAMP1
    assert record.task.created_at == STAMP0
    assert record.input_requests == {
        "input-1": elicit(1),
        "input-2": elicit(2),
        "input-3": elicit(3),
    }
    assert list(record.input_requests) == ["input-1", "input-2", "input-3"]
    assert record.input_answers == {}
    assert record.input_keys == 3
    assert record.version == created.version + 1
    assert store.get(created.task_id, OWNER) == record


def test_keys_are_never_reused_after_answers_and_takes(store: TaskStore) -> None:
    """After asking, answering and taking, the next requests get the next numbers (input-3,
    then input-4/input-5), and an answer to a retired key changes nothing."""
    task_id, keys, _ = asking(store, 2)
    assert keys == ["input-1", "input-2"]
    store.answer_input(task_id, OWNER, {"input-1": accept("a"), "input-2": accept("b")})
    assert store.take_input(task_id, OWNER, keys) == {
        "input-1": accept("a"),
        "input-2": accept("b"),
    }
    record, again = store.request_input(task_id, OWNER, [elicit(3)], "Once more")
    assert again == ["input-3"]
    assert record.input_requests == {"input-3": elicit(3)}
    assert record.input_keys == 3
    stale = store.answer_input(task_id, OWNER, {"input-1": accept("late")})
    assert stale.version == record.version
    assert store.get(task_id, OWNER).version == record.version
    store.answer_input(task_id, OWNER, {"input-3": accept("c")})
    assert store.take_input(task_id, OWNER, again) == {"input-3": accept("c")}
    record, more = store.request_input(task_id, OWNER, [elicit(4), elicit(5)], None)
    assert more == ["input-4", "input-5"]
    assert record.input_keys == 5
    assert record.input_requests == {"input-4": elicit(4), "input-5": elicit(5)}
    assert record.input_answers == {}


def test_asking_again_while_waiting_adds_requests_and_replaces_the_message(
    store: TaskStore,
) -> None:
    """A second request_input while input_required keeps the first request outstanding, adds
    the new one under the next key and replaces the status message."""
    task_id, _keys, version = asking(store, 1, "First")
    record, more = store.request_input(task_id, OWNER, [elicit(2)], "Second")
    assert more == ["input-2"]
    assert record.status is TaskStatus.INPUT_REQUIRED
    assert record.task.status_message == "Second"
    assert record.input_requests == {"input-1": elicit(1), "input-2": elicit(2)}
    assert record.version == version + 1


def test_an_empty_request_list_never_leaves_the_task_waiting_on_nothing(store: TaskStore) -> None:
    """request_input with no requests writes nothing: the task must not become input_required
    with nothing outstanding (no answer could ever bring it back to working)."""
    created = store.create(OWNER)
    try:
        store.request_input(created.task_id, OWNER, [], "Nothing to ask")
    except InvalidParamsError:
        pass
    after = store.get(created.task_id, OWNER)
    assert (after.status, after.input_requests, after.version) == (
        TaskStatus.WORKING,
        {},
        created.version,
    )


# -- answers ---------------------------------------------------------------------------------


def test_partial_answers_leave_the_task_waiting_until_nothing_is_outstanding(
    store: TaskStore, clock: ManualClock
) -> None:
    """An answered key leaves input_requests at once while the other stays (task still
    input_required with its message); the last answer makes the task working again without
    a status message."""
    task_id, _keys, version = asking(store, 2, "Two questions")
    clock.advance(1_000)
    first = store.answer_input(task_id, OWNER, {"input-1": accept("a")})
    assert first.status is TaskStatus.INPUT_REQUIRED
    assert first.task.status_message == "Two questions"
    assert first.task.last_updated_at == STAMP1
    assert first.input_requests == {"input-2": elicit(2)}
    assert first.input_answers == {"input-1": accept("a")}
    assert first.version == version + 1
    assert store.get(task_id, OWNER) == first
    clock.advance(1_000)
    second = store.answer_input(task_id, OWNER, {"input-2": accept("b")})
    assert second.status is TaskStatus.WORKING
    assert second.task.status_message is None
    assert second.task.last_updated_at == STAMP2
    assert second.input_requests == {}
    assert second.input_answers == {"input-1": accept("a"), "input-2": accept("b")}
    assert second.version == version + 2
    assert second.input_keys == 2
    assert store.get(task_id, OWNER) == second
    assert "statusMessage" not in second.to_wire()


def test_answering_every_key_at_once_returns_to_working_in_one_write(store: TaskStore) -> None:
    """One answer_input carrying every outstanding key is one write that ends the wait."""
    task_id, keys, version = asking(store, 3)
    record = store.answer_input(task_id, OWNER, {key: accept(key) for key in keys})
    assert record.status is TaskStatus.WORKING
    assert record.input_requests == {}
    assert record.input_answers == {key: accept(key) for key in keys}
    assert record.version == version + 1


def test_unknown_and_stale_keys_are_ignored_without_a_write(store: TaskStore) -> None:
    """Answers to keys never issued (even with values no request would accept) or already
    answered write nothing (version unchanged); mixed with a real key only that one counts."""
    task_id, _keys, version = asking(store, 2)
    ignored = store.answer_input(
        task_id, OWNER, {"input-9": accept("x"), "unknown-key": {"ignored": True}, "": 5}
    )
    assert ignored.version == version
    assert ignored.input_requests == {"input-1": elicit(1), "input-2": elicit(2)}
    assert ignored.input_answers == {}
    assert store.get(task_id, OWNER).version == version
    mixed = store.answer_input(
        task_id, OWNER, {"input-1": accept("a"), "unknown-key": {"ignored": True}}
    )
    assert mixed.version == version + 1
    assert mixed.input_answers == {"input-1": accept("a")}
    assert mixed.input_requests == {"input-2": elicit(2)}
    again = store.answer_input(task_id, OWNER, {"input-1": accept("changed my mind")})
    assert again.version == version + 1
    assert again.input_answers == {"input-1": accept("a")}
    assert store.get(task_id, OWNER) == mixed


_BAD_ELICIT_ANSWERS = [
    "accept",
    ["accept"],
    None,
    {},
    {"action": "maybe"},
    {"action": "ACCEPT", "content": {"answer": "a"}},
    {"action": "accept", "content": "a"},
    {"action": "accept", "content": ["a"]},
    {"error": "the client could not ask"},
    {"action": "accept", "content": {"answer": float("nan")}},
]

_GOOD_ELICIT_ANSWERS = [
    {"action": "accept", "content": {"answer": "a"}},
    {"action": "accept"},
    {"action": "decline"},
    {"action": "cancel"},
    {"error": {"code": -32603, "message": "no user present"}},
]


def test_answers_must_fit_the_request_method(store: TaskStore) -> None:
    """An elicitation answer that is not an ElicitResult (action accept/decline/cancel,
    content an object) nor an ``{"error": {...}}`` raises InvalidParamsError and writes
    nothing, even next to a valid answer for another key; every valid form is accepted."""
    task_id, keys, version = asking(store, len(_GOOD_ELICIT_ANSWERS))
    for bad in _BAD_ELICIT_ANSWERS:
        with pytest.raises(InvalidParamsError):
            store.answer_input(task_id, OWNER, {"input-1": bad})
        with pytest.raises(InvalidParamsError):
            store.answer_input(task_id, OWNER, {"input-2": accept("ok"), "input-1": bad})
        unchanged = store.get(task_id, OWNER)
        assert unchanged.version == version, f"{bad!r} was written"
        assert unchanged.input_answers == {}
        assert len(unchanged.input_requests) == len(keys)
    for key, good in zip(keys, _GOOD_ELICIT_ANSWERS, strict=True):
        store.answer_input(task_id, OWNER, {key: good})
    done = store.get(task_id, OWNER)
    assert done.status is TaskStatus.WORKING
    assert done.input_answers == dict(zip(keys, _GOOD_ELICIT_ANSWERS, strict=True))
    assert done.version == version + len(keys)


def test_sampling_and_roots_answers_are_checked_by_method(store: TaskStore) -> None:
    """A sampling/createMessage answer needs a role and content and a roots/list answer a
    roots list; other shapes raise InvalidParamsError and write nothing."""
    task_id = store.create(OWNER).task_id
    sampling = {"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 5}}
    roots = {"method": "roots/list", "params": {}}
    record, keys = store.request_input(task_id, OWNER, [sampling, roots], None)
    assert keys == ["input-1", "input-2"]
    for bad in (
        {"input-1": {"content": {"type": "text", "text": "hi"}}},
        {"input-1": {"role": "assistant"}},
        {"input-1": {"action": "accept"}},
        {"input-2": {"roots": {}}},
        {"input-2": {"action": "accept"}},
    ):
        with pytest.raises(InvalidParamsError):
            store.answer_input(task_id, OWNER, bad)
        assert store.get(task_id, OWNER).version == record.version
    message = {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"}
    listed = {"roots": [{"uri": "file:///tmp", "name": "tmp"}]}
    done = store.answer_input(task_id, OWNER, {"input-1": message, "input-2": listed})
    assert done.status is TaskStatus.WORKING
    assert done.input_answers == {"input-1": message, "input-2": listed}


@pytest.mark.parametrize("ending", ["complete", "fail", "cancel"])
def test_a_terminal_task_takes_no_requests_and_ignores_answers(
    store: TaskStore, ending: str
) -> None:
    """On a completed, failed or cancelled task request_input raises InvalidTransitionError and
    answer_input returns the task unchanged (no write)."""
    task_id, _keys, _ = asking(store, 1)
    if ending == "complete":
        ended = store.complete(task_id, OWNER, {"content": []})
    elif ending == "fail":
        ended = store.fail(task_id, OWNER, error={"code": -32603, "message": "boom"})
    else:
        ended = store.cancel(task_id, OWNER)
    with pytest.raises(InvalidTransitionError):
        store.request_input(task_id, OWNER, [elicit(2)], "too late")
    answered = store.answer_input(task_id, OWNER, {"input-1": accept("late")})
    assert answered.version == ended.version
    assert answered.status is ended.status
    assert answered.input_answers == {}
    after = store.get(task_id, OWNER)
    assert after.version == ended.version
    assert after.status is ended.status
    assert after.input_answers == {}
    assert after.input_keys == 1


# -- taking answers --------------------------------------------------------------------------


def test_take_input_waits_for_every_key_then_removes_the_answers(store: TaskStore) -> None:
    """take_input is None (and writes nothing) until every key is answered, then returns the
    answers and removes them, so a second take is None; a subset take leaves the rest."""
    task_id, keys, version = asking(store, 3)
    assert store.take_input(task_id, OWNER, keys) is None
    store.answer_input(task_id, OWNER, {"input-1": accept("a")})
    assert store.take_input(task_id, OWNER, keys) is None
    assert store.get(task_id, OWNER).version == version + 1
    store.answer_input(task_id, OWNER, {"input-2": accept("b"), "input-3": accept("c")})
    assert store.take_input(task_id, OWNER, ["input-1", "input-2"]) == {
        "input-1": accept("a"),
        "input-2": accept("b"),
    }
    after = store.get(task_id, OWNER)
    assert after.input_answers == {"input-3": accept("c")}
    assert after.version == version + 3
    assert store.take_input(task_id, OWNER, ["input-1"]) is None
    assert store.take_input(task_id, OWNER, ["input-3"]) == {"input-3": accept("c")}
    final = store.get(task_id, OWNER)
    assert final.input_answers == {}
    assert final.version == version + 4
    assert final.status is TaskStatus.WORKING
    assert store.take_input(task_id, OWNER, keys) is None
    assert store.get(task_id, OWNER).version == version + 4


# -- storage ---------------------------------------------------------------------------------


_TRICKY_REQUEST = {
    "method": "elicitation/create",
    "params": {
        "mode": "form",
        "message": 'Wählen Sie ✓ — 日本語 \u0000 "quoted" \\ back',
        "requestedSchema": {
            "type": "object",
            "properties": {
                "n": {"type": "number", "minimum": -1.5, "maximum": 1e300},
                "big": {"type": "integer", "default": 9_007_199_254_740_993},
                "flag": {"type": "boolean", "default": False},
                "none": {"default": None},
                "list": {"type": "array", "items": [], "default": [1, "two", {"three": 3}]},
            },
            "required": [],
        },
        "_meta": {"io.modelcontextprotocol/related-task": {"taskId": "x"}},
    },
}


def test_input_requests_survive_the_backend_exactly(store: TaskStore, clock: ManualClock) -> None:
    """Requests and answers with non-ASCII text, NUL, floats, big ints, booleans, nulls and
    nesting read back identically through a second store over the same backend and from the
    raw stored bytes."""
    task_id = store.create(OWNER).task_id
    sampling = {"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 1}}
    written, keys = store.request_input(task_id, OWNER, [_TRICKY_REQUEST, sampling], "¿Sí?")
    answer = {"action": "accept", "content": {"n": 0.1, "big": 2**62, "flag": True, "s": "ü"}}
    written = store.answer_input(task_id, OWNER, {keys[0]: answer})
    other = TaskStore(store.backend, clock=clock)  # shares the backend: never closed itself
    read = other.get(task_id, OWNER)
    assert read == written
    assert read.input_requests == {keys[1]: sampling}
    assert read.input_answers == {keys[0]: answer}
    content = read.input_answers[keys[0]]["content"]
    assert type(content["n"]) is float and type(content["big"]) is int
    assert type(content["flag"]) is bool
    stored = store.backend.get((OWNER, task_id), now_ms=T0)
    assert decode_record(stored.data, stored.version) == written
    record, more = other.request_input(task_id, OWNER, [_TRICKY_REQUEST], None)
    assert more == ["input-3"]
    fresh = store.get(task_id, OWNER)
    assert fresh == record
    assert fresh.input_requests == {"input-2": sampling, "input-3": _TRICKY_REQUEST}
    schema = fresh.input_requests["input-3"]["params"]["requestedSchema"]["properties"]
    assert schema["big"]["default"] == 9_007_199_254_740_993
    assert schema["n"]["maximum"] == 1e300 and type(schema["n"]["minimum"]) is float


# -- events ----------------------------------------------------------------------------------


def _eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) for an asynchronous effect such as a pub/sub delivery."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def test_only_every_change_watchers_see_answers_that_keep_the_status(store: TaskStore) -> None:
    """watch(every_change=True) sees the request, the partial answer (status unchanged) and
    the last answer; plain watch and subscribe see only the two status changes."""
    every: list[TaskRecord] = []
    plain: list[TaskRecord] = []
    wire: list[dict[str, Any]] = []
    store.watch(every.append, owner=OWNER, every_change=True)
    store.watch(plain.append, owner=OWNER)
    store.subscribe(wire.append, owner=OWNER)
    task_id, _keys, version = asking(store, 2, "Two")
    store.answer_input(task_id, OWNER, {"input-1": accept("a")})
    store.answer_input(task_id, OWNER, {"input-2": accept("b")})
    # Events of one task arrive in order: once the last status change reached the plain
    # subscribers, the partial answer's event has been dispatched to everyone.
    _eventually(lambda: len(every) >= 3 and len(plain) >= 2 and len(wire) >= 2)
    assert [(e.status, e.version, e.input_requests) for e in every] == [
        (TaskStatus.INPUT_REQUIRED, version, {"input-1": elicit(1), "input-2": elicit(2)}),
        (TaskStatus.INPUT_REQUIRED, version + 1, {"input-2": elicit(2)}),
        (TaskStatus.WORKING, version + 2, {}),
    ]
    assert all(e.task_id == task_id and e.input_answers == {} for e in every)
    assert [(e.status, e.version) for e in plain] == [
        (TaskStatus.INPUT_REQUIRED, version),
        (TaskStatus.WORKING, version + 2),
    ]
    assert [(w["taskId"], w["status"]) for w in wire] == [
        (task_id, "input_required"),
        (task_id, "working"),
    ]
    assert wire[0]["statusMessage"] == "Two" and "statusMessage" not in wire[1]


def test_wait_for_change_wakes_on_an_answer_from_another_thread(store: TaskStore) -> None:
    """A wait_for_change on the waiting task's version returns soon after another thread
    answers (well within its 30 s timeout), and the re-read shows the answer."""
    task_id, _keys, version = asking(store, 1)

    def answer() -> None:
        time.sleep(0.2)
        store.answer_input(task_id, OWNER, {"input-1": accept("a")})

    worker = threading.Thread(target=answer)
    started = time.monotonic()
    worker.start()
    waits = 0
    try:
        record = store.get(task_id, OWNER)
        while record.version == version and time.monotonic() - started < 30:
            store.wait_for_change(task_id, OWNER, version, 30.0)
            waits += 1
            record = store.get(task_id, OWNER)
        elapsed = time.monotonic() - started
    finally:
        worker.join(30)
    assert elapsed < 10.0, f"woke only after {elapsed:.2f}s"
    assert 1 <= waits <= 10, f"{waits} waits: busy waiting"
    assert record.version == version + 1
    assert record.status is TaskStatus.WORKING
    assert record.input_answers == {"input-1": accept("a")}


# -- races -----------------------------------------------------------------------------------


def test_concurrent_answers_to_different_keys_lose_nothing(
    store: TaskStore, atomic_backend: None
) -> None:
    """Eight threads answering eight different outstanding keys at once all land: every
    answer stored, nothing outstanding, the task working, exactly eight more versions."""
    task_id, keys, version = asking(store, 8)
    results = run_barrier_threads(
        8, lambda i: store.answer_input(task_id, OWNER, {keys[i]: accept(i)})
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert sorted(r.version for r in results) == list(range(version + 1, version + 9))
    final = store.get(task_id, OWNER)
    assert final.input_answers == {key: accept(i) for i, key in enumerate(keys)}
    assert final.input_requests == {}
    assert final.status is TaskStatus.WORKING
    assert final.task.status_message is None
    assert final.version == version + 8
    assert store.take_input(task_id, OWNER, keys) == {key: accept(i) for i, key in enumerate(keys)}


_ROUNDS = 4


@pytest.mark.parametrize("ending", ["cancel", "complete"])
def test_an_answer_racing_the_end_of_the_task_is_applied_before_or_ignored_after(
    store: TaskStore, atomic_backend: None, ending: str
) -> None:
    """An answer racing a cancel (or a complete) never crashes or undoes the end: the task
    ends cancelled (completed with its result), with the answer either stored before the end
    (two writes) or ignored after it (one write, the request still listed)."""
    result = {"content": [{"type": "text", "text": "done"}], "isError": False}
    for _ in range(_ROUNDS):
        task_id, _keys, version = asking(store, 1)

        def act(i: int, task_id: str = task_id) -> TaskRecord:
            if i == 0:
                return store.answer_input(task_id, OWNER, {"input-1": accept("a")})
            if ending == "cancel":
                return store.cancel(task_id, OWNER)
            return store.complete(task_id, OWNER, result)

        answered, ended = run_barrier_threads(2, act)
        assert isinstance(answered, TaskRecord), answered
        assert isinstance(ended, TaskRecord), ended
        final_status = TaskStatus.CANCELLED if ending == "cancel" else TaskStatus.COMPLETED
        final = store.get(task_id, OWNER)
        assert final.status is final_status
        assert ended.status is final_status
        if "input-1" in final.input_answers:
            assert answered.status is TaskStatus.WORKING
            assert answered.version == version + 1
            assert final.input_answers == {"input-1": accept("a")}
            assert final.input_requests == {}
            assert final.version == ended.version == version + 2
        else:
            assert answered.status is final_status
            assert answered.version == version + 1
            assert final.input_answers == {}
            assert final.input_requests == {"input-1": elicit(1)}
            assert final.version == ended.version == version + 1
        if ending == "complete":
            assert store.get_result(task_id, OWNER).result == result
