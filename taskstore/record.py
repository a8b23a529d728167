"""The stored form of a task, its outcome, the canonical codec, and variable validation.

A task is stored as two blobs (DESIGN §5, §8): the *record* (wire task, owner, variables,
bookkeeping) and, once terminal, the *outcome* (result or error). Reads that only need status
(``get``, ``list``, ``wait``) fetch and decode the record alone, so a large result never slows
them down.

Both blobs are canonical JSON (``msgspec.json.Encoder(order="sorted")``): identical input gives
identical bytes, so any backend can read what another wrote. Stored types never forbid unknown
fields; they evolve only by appending defaulted fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from taskstore.errors import BackendError, InvalidParamsError, VariablesTooLargeError
from taskstore.states import TERMINAL_STATUSES, TaskStatus
from taskstore.types import Task, task_wire

__all__ = [
    "Outcome",
    "OutcomeKind",
    "TaskRecord",
    "decode_outcome",
    "decode_record",
    "encode_outcome",
    "encode_record",
    "json_size",
    "merge_variables",
    "validate_json_value",
]

OutcomeKind = Literal["result", "error"]


class Outcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How a terminal task ended.

    ``kind == "result"``: ``result`` holds what the underlying request returned (any JSON value,
    ``None`` included; for ``tools/call`` a ``CallToolResult``, possibly with ``isError: true``).
    ``kind == "error"``: ``error`` holds the JSON-RPC error object ``{"code", "message", "data"?}``.
    """

    kind: OutcomeKind
    result: Any = None
    error: dict[str, Any] | None = None

    @classmethod
    def of_result(cls, result: Any) -> Outcome:
        """An outcome carrying ``result`` (``None`` is a real, stored ``null`` result)."""
        return cls(kind="result", result=result)

    @classmethod
    def of_error(cls, error: Mapping[str, Any]) -> Outcome:
        """An outcome carrying the JSON-RPC ``error`` object.

        :raises InvalidParamsError: unless ``error`` has an integer ``code`` and a string
            ``message``.
        """
        code = error.get("code")
        message = error.get("message")
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(message, str):
            raise InvalidParamsError(
                "An error outcome needs an integer 'code' and a string 'message'"
            )
        return cls(kind="error", error=dict(error))


class TaskRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A task as the store keeps it.

    :ivar task: the wire :class:`~taskstore.types.Task` (status, timestamps, ttl, message).
    :ivar owner: who owns the task; every store call is scoped to it.
    :ivar variables: the shared scratchpad (JSON object), merged by ``set_variables``.
    :ivar request_method: the method of the request that created the task (``tools/call``).
    :ivar request: the original request params, if the creator kept them.
    :ivar created_at_ms: creation time in epoch ms (the listing sort key, the TTL origin).
    :ivar expires_at_ms: absolute expiry in epoch ms, ``None`` for unlimited.
    :ivar outcome_kind: ``"result"``/``"error"`` once an outcome is stored, else ``None`` (this is
        the "has outcome" flag: a stored ``null`` result still has ``outcome_kind == "result"``).
    :ivar version: the backend version this record was read at (not part of the stored bytes).
    :ivar outcome: the outcome when it was loaded (``complete``/``fail`` return it; ``get`` and
        ``list`` do not load it); not part of the stored record bytes.
    :ivar input_requests: the task's outstanding requests for client input, by key (each
        ``{"method", "params"}``, e.g. an ``elicitation/create``); kept in the record so any
        process can relay them and accept their answers.
    :ivar input_answers: answers received for the task's requests, by key, not yet taken by
        the tool waiting for them.
    :ivar input_keys: how many input request keys were ever issued (keys are ``input-<n>``,
        never reused within a task).
    """

    task: Task
    owner: str
    created_at_ms: int
    expires_at_ms: int | None
    variables: dict[str, Any] = {}
    request_method: str = "tools/call"
    request: dict[str, Any] | None = None
    outcome_kind: OutcomeKind | None = None
    version: int = 0
    outcome: Outcome | None = None
    input_requests: dict[str, Any] = {}
    input_answers: dict[str, Any] = {}
    input_keys: int = 0

    @property
    def task_id(self) -> str:
        """The task id."""
        return self.task.task_id

    @property
    def status(self) -> TaskStatus:
        """The current status."""
        return self.task.status

    @property
    def is_terminal(self) -> bool:
        """``True`` once the task is completed, failed or cancelled."""
        return self.task.status in TERMINAL_STATUSES

    @property
    def has_outcome(self) -> bool:
        """``True`` when an outcome (result or error) is stored, even a ``null`` result."""
        return self.outcome_kind is not None

    @property
    def result(self) -> Any:
        """The loaded result value (``None`` if not loaded or not a result outcome)."""
        return self.outcome.result if self.outcome is not None else None

    @property
    def error(self) -> dict[str, Any] | None:
        """The loaded JSON-RPC error object (``None`` if not loaded or not an error outcome)."""
        return self.outcome.error if self.outcome is not None else None

    def to_wire(self, *, include_variables: bool = False) -> dict[str, Any]:
        """Return the flat MCP 2025-11-25 wire dict of the task (the ``tasks/get`` result
        shape; kept for DESIGN §5's API: the protocol layer projects records through
        ``taskstore.mcp.projections`` instead).

        :param include_variables: inject the variables at the top level of ``_meta`` (the
            ``pmcp-tasks`` extension); reserved ``io.modelcontextprotocol/`` keys already in
            ``_meta`` win over variables of the same name.
        """
        return task_wire(self.task, self.variables if include_variables else None)


_canonical = msgspec.json.Encoder(order="sorted")
_record_decoder = msgspec.json.Decoder(TaskRecord)
_outcome_decoder = msgspec.json.Decoder(Outcome)


def encode_record(record: TaskRecord) -> bytes:
    """Encode ``record`` as canonical JSON, leaving out ``version`` and ``outcome``.

    (The backend owns the version; the outcome travels as its own blob.)
    """
    if record.version or record.outcome is not None:
        record = msgspec.structs.replace(record, version=0, outcome=None)
    return _canonical.encode(record)


def decode_record(data: bytes, version: int) -> TaskRecord:
    """Decode stored record bytes and attach the backend ``version``.

    :raises BackendError: if the bytes are not a valid record (corrupt storage).
    """
    try:
        record = _record_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BackendError(f"Stored task record is corrupt: {exc}", applied=False) from exc
    return msgspec.structs.replace(record, version=version)


def encode_outcome(outcome: Outcome) -> bytes:
    """Encode ``outcome`` as canonical JSON."""
    return _canonical.encode(outcome)


def decode_outcome(data: bytes) -> Outcome:
    """Decode a stored outcome blob.

    :raises BackendError: if the bytes are not a valid outcome (corrupt storage).
    """
    try:
        return _outcome_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BackendError(f"Stored task outcome is corrupt: {exc}", applied=False) from exc


_compact = msgspec.json.Encoder()


def json_size(value: Any) -> int:
    """Size in bytes of ``value`` as compact UTF-8 JSON."""
    return len(_compact.encode(value))


def validate_json_value(
    value: Any, *, max_depth: int, max_string_bytes: int, what: str = "value"
) -> None:
    """Check that ``value`` is plain JSON within the limits.

    Containers count one level each (``[]`` and ``{}`` are depth 1, a scalar depth 0); the
    depth of ``value`` must not exceed ``max_depth``. Every string (values and object keys) must
    fit in ``max_string_bytes`` UTF-8 bytes. Object keys must be strings. NaN and ±Infinity are
    rejected rather than turned into ``null``.

    :raises InvalidParamsError: naming the first problem found.
    """
    # Iterative walk: a hostile, very deep value must not hit Python's recursion limit.
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            try:
                size = len(item.encode("utf-8"))
            except UnicodeEncodeError:
                raise InvalidParamsError(
                    f"A string in {what} is not valid Unicode (lone surrogate)"
                ) from None
            if size > max_string_bytes:
                raise InvalidParamsError(
                    f"A string in {what} exceeds the limit of {max_string_bytes} bytes"
                )
            continue
        if isinstance(item, int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidParamsError(f"{what} contains NaN or Infinity, which JSON cannot hold")
            continue
        if isinstance(item, (list, tuple)):
            if depth + 1 > max_depth:
                raise InvalidParamsError(f"{what} is nested deeper than {max_depth} levels")
            stack.extend((child, depth + 1) for child in item)
            continue
        if isinstance(item, dict):
            if depth + 1 > max_depth:
                raise InvalidParamsError(f"{what} is nested deeper than {max_depth} levels")
            for key, child in item.items():
                if not isinstance(key, str):
                    raise InvalidParamsError(f"Object keys in {what} must be strings")
                stack.append((key, depth + 1))
                stack.append((child, depth + 1))
            continue
        raise InvalidParamsError(f"{what} holds a {type(item).__name__}, which is not JSON")


def merge_variables(
    current: Mapping[str, Any],
    updates: Mapping[str, Any],
    *,
    max_bytes: int,
    max_depth: int,
    max_string_bytes: int,
) -> dict[str, Any]:
    """Return ``current`` merged with ``updates`` (``None`` deletes a key), validated.

    Keys are non-empty strings. Each value obeys :func:`validate_json_value` with ``max_depth``
    counted from the value itself. The merged map's compact UTF-8 JSON must fit in
    ``max_bytes``. Nothing is mutated; on any error nothing changes.

    :raises InvalidParamsError: bad key or value.
    :raises VariablesTooLargeError: the merged map exceeds ``max_bytes``.
    """
    if not isinstance(updates, Mapping):
        raise InvalidParamsError("Variables must be a JSON object")
    merged = dict(current)
    for key, value in updates.items():
        if not isinstance(key, str) or not key:
            raise InvalidParamsError("Variable names must be non-empty strings")
        if len(key.encode("utf-8")) > max_string_bytes:
            raise InvalidParamsError(
                f"A variable name exceeds the limit of {max_string_bytes} bytes"
            )
        if value is None:
            merged.pop(key, None)
            continue
        validate_json_value(
            value, max_depth=max_depth, max_string_bytes=max_string_bytes, what=f"variable {key!r}"
        )
        merged[key] = value
    size = json_size(merged)
    if size > max_bytes:
        raise VariablesTooLargeError(
            f"Task variables would take {size} bytes, over the limit of {max_bytes} bytes",
            data={"limit": max_bytes, "size": size},
        )
    return merged
