"""A task's requests for client input, kept in its record (era-neutral; DESIGN §9c).

A tool that needs the client's input (an ``elicitation/create``, say) files requests in its
task's record; the task goes ``input_required``. Whoever serves the client relays them, in any
process: 2025-11-25 ``tasks/result`` streams send them as JSON-RPC requests, 2026-07-28
``tasks/get`` lists them under ``inputRequests``. Answers (a legacy client's response, a
``tasks/update``) are merged into the record by compare-and-set: an answered request leaves
``input_requests`` at once, unknown or stale keys are ignored, partial answers are kept, and
when nothing is outstanding any more the task is ``working`` again. The tool takes its answers
out of the record. Keys are ``input-<n>``, never reused within a task.

These are pure functions from a record to the changed record; :class:`~taskstore.store.TaskStore`
applies them with its compare-and-set loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from taskstore.errors import InvalidParamsError, InvalidTransitionError
from taskstore.record import TaskRecord, json_size, validate_json_value
from taskstore.states import TaskStatus

__all__ = [
    "MAX_INPUT_BYTES",
    "check_response",
    "with_answers",
    "with_requests",
    "without_answers",
]

#: Cap on one input request or answer, as compact JSON.
MAX_INPUT_BYTES = 262_144
_MAX_DEPTH = 32


def _check_value(value: Any, what: str) -> None:
    validate_json_value(value, max_depth=_MAX_DEPTH, max_string_bytes=MAX_INPUT_BYTES, what=what)
    if json_size(value) > MAX_INPUT_BYTES:
        raise InvalidParamsError(f"{what} is larger than {MAX_INPUT_BYTES} bytes")


_ELICIT_ACTIONS = frozenset({"accept", "decline", "cancel"})


def check_response(method: str, response: object) -> None:
    """Check that ``response`` has the shape of an answer to a ``method`` request: an
    ``ElicitResult`` (``action`` accept/decline/cancel, ``content`` an object if present) for
    ``elicitation/create``, a message for ``sampling/createMessage``, ``{"roots": [...]}`` for
    ``roots/list``; any method may be answered with ``{"error": {...}}`` (the client could not
    provide the input). Other methods' answers need only be JSON objects.

    :raises InvalidParamsError: the answer does not fit.
    """
    if not isinstance(response, Mapping):
        raise InvalidParamsError(f"The answer to a {method} request must be an object")
    if "error" in response and "action" not in response:
        if not isinstance(response["error"], Mapping):
            raise InvalidParamsError("An error answer needs an error object")
        return
    if method == "elicitation/create":
        if response.get("action") not in _ELICIT_ACTIONS:
            raise InvalidParamsError("An elicitation answer needs action accept, decline or cancel")
        if "content" in response and not isinstance(response["content"], Mapping):
            raise InvalidParamsError("An elicitation answer's content must be an object")
    elif method == "sampling/createMessage":
        if not isinstance(response.get("content"), (Mapping, list)) or "role" not in response:
            raise InvalidParamsError("A sampling answer needs a role and content")
    elif method == "roots/list" and not isinstance(response.get("roots"), list):
        raise InvalidParamsError("A roots answer needs a roots list")


def _checked_request(request: object) -> dict[str, Any]:
    if not isinstance(request, Mapping):
        raise InvalidParamsError("An input request must be an object with method and params")
    method, params = request.get("method"), request.get("params")
    if not isinstance(method, str) or not method or not isinstance(params, Mapping):
        raise InvalidParamsError("An input request needs a string method and object params")
    checked = {"method": method, "params": dict(params)}
    _check_value(checked, "an input request")
    return checked


def with_requests(
    record: TaskRecord, requests: Sequence[Mapping[str, Any]], message: str | None
) -> tuple[TaskRecord, list[str], bool]:
    """File ``requests`` under fresh keys; the task becomes ``input_required``.

    :returns: the changed record (task fields other than status and message untouched: the
        store stamps ``lastUpdatedAt``), the new keys in request order, and whether the status
        changed.
    :raises InvalidTransitionError: the task is terminal.
    :raises InvalidParamsError: no request, or a malformed or oversized one.
    """
    if not requests:
        raise InvalidParamsError("An input request list needs at least one request")
    if record.is_terminal:
        raise InvalidTransitionError(
            record.task_id, record.status.value, TaskStatus.INPUT_REQUIRED.value
        )
    checked = [_checked_request(request) for request in requests]
    keys = [f"input-{record.input_keys + n}" for n in range(1, len(checked) + 1)]
    outstanding = {**record.input_requests, **dict(zip(keys, checked, strict=True))}
    task = msgspec.structs.replace(
        record.task, status=TaskStatus.INPUT_REQUIRED, status_message=message
    )
    changed = msgspec.structs.replace(
        record,
        task=task,
        input_requests=outstanding,
        input_keys=record.input_keys + len(keys),
    )
    return changed, keys, record.status is not TaskStatus.INPUT_REQUIRED


def with_answers(
    record: TaskRecord, responses: Mapping[str, Any]
) -> tuple[TaskRecord, bool] | None:
    """Merge the answers to outstanding requests; other keys are ignored.

    :returns: the changed record and whether its status changed (back to ``working`` once
        nothing is outstanding), or ``None`` when nothing changes (no outstanding key answered,
        or the task is terminal).
    :raises InvalidParamsError: an answer that is not JSON, is oversized, or does not fit its
        request (:func:`check_response`).
    """
    if record.is_terminal:
        return None
    answered = {key: value for key, value in responses.items() if key in record.input_requests}
    if not answered:
        return None
    for key, value in answered.items():
        _check_value(value, "an input response")
        check_response(str(record.input_requests[key].get("method")), value)
    outstanding = {k: v for k, v in record.input_requests.items() if k not in answered}
    status = record.status
    if not outstanding and status is TaskStatus.INPUT_REQUIRED:
        status = TaskStatus.WORKING
    task = msgspec.structs.replace(record.task, status=status)
    if status is not record.status:
        task = msgspec.structs.replace(task, status_message=None)
    changed = msgspec.structs.replace(
        record,
        task=task,
        input_requests=outstanding,
        input_answers={**record.input_answers, **answered},
    )
    return changed, status is not record.status


def without_answers(
    record: TaskRecord, keys: Sequence[str]
) -> tuple[TaskRecord, dict[str, Any]] | None:
    """Take the answers to ``keys`` out of the record, once all of them have arrived.

    :returns: the changed record and the answers by key, or ``None`` while one is missing.
    """
    if any(key not in record.input_answers for key in keys):
        return None
    taken = {key: record.input_answers[key] for key in keys}
    rest = {k: v for k, v in record.input_answers.items() if k not in taken}
    return msgspec.structs.replace(record, input_answers=rest), taken
