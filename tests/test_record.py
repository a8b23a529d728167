"""The stored record, outcomes and the canonical codec."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from taskstore import BackendError, InvalidParamsError, Outcome, Task, TaskRecord, TaskStatus
from taskstore.record import (
    decode_outcome,
    decode_record,
    encode_outcome,
    encode_record,
    merge_variables,
)

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=12,
)


def _record(**overrides: Any) -> TaskRecord:
    fields: dict[str, Any] = {
        "task": Task(
            task_id="t", status=TaskStatus.WORKING, created_at="c", last_updated_at="u", ttl=None
        ),
        "owner": "o",
        "created_at_ms": 1,
        "expires_at_ms": None,
    }
    fields.update(overrides)
    return TaskRecord(**fields)


@given(
    variables=st.dictionaries(st.text(min_size=1, max_size=5), _json, max_size=4),
    owner=st.text(max_size=10),
    request=st.none() | st.dictionaries(st.text(max_size=3), _json, max_size=3),
    version=st.integers(1, 2**40),
)
def test_record_round_trip(
    variables: dict[str, Any], owner: str, request: Any, version: int
) -> None:
    """Any record survives encode → decode; version comes from the backend, not the bytes."""
    record = _record(variables=variables, owner=owner, request=request, version=7)
    decoded = decode_record(encode_record(record), version)
    assert decoded == msgspec.structs.replace(record, version=version)


def test_encoding_is_canonical() -> None:
    """Equal records encode to identical bytes whatever the dict insertion order."""
    a = _record(variables={"b": 1, "a": {"y": 1, "x": 2}})
    b = _record(variables={"a": {"x": 2, "y": 1}, "b": 1})
    assert encode_record(a) == encode_record(b)
    assert encode_record(a).index(b'"a"') < encode_record(a).index(b'"b"')


def test_encoding_leaves_out_version_and_outcome() -> None:
    """The stored record bytes carry neither the version nor the outcome."""
    record = _record(version=5, outcome=Outcome.of_result({"big": 1}))
    raw = encode_record(record)
    assert b"version" not in raw and b"big" not in raw


@given(_json)
def test_outcome_round_trip_keeps_null(result: Any) -> None:
    """Result outcomes survive the codec, a null result included."""
    outcome = Outcome.of_result(result)
    assert decode_outcome(encode_outcome(outcome)) == outcome


def test_error_outcome() -> None:
    """Error outcomes keep code, message and data."""
    outcome = Outcome.of_error({"code": -1, "message": "m", "data": [1]})
    assert decode_outcome(encode_outcome(outcome)).error == {
        "code": -1,
        "message": "m",
        "data": [1],
    }


_VALID_RECORD = encode_record(_record())
_VALID_OUTCOME = encode_outcome(Outcome.of_result({"ok": True}))


@example(b"")
@example(b"{}")
@example(_VALID_RECORD)
@example(_VALID_OUTCOME)
@example(_VALID_RECORD[:-1])
@given(st.binary(max_size=100))
def test_corrupt_bytes_are_backend_errors(data: bytes) -> None:
    """Garbage in storage raises BackendError naming the corrupt kind with the decoding error
    chained, never a raw decoding error; bytes that do decode are a real record or outcome
    (they survive a round trip)."""
    codecs: list[tuple[str, Callable[[bytes], Any], Callable[[Any], bytes]]] = [
        ("record", lambda d: decode_record(d, 1), encode_record),
        ("outcome", decode_outcome, encode_outcome),
    ]
    for kind, decoder, encoder in codecs:
        try:
            decoded = decoder(data)
        except BackendError as exc:
            assert str(exc).startswith(f"Stored task {kind} is corrupt: "), exc
            assert isinstance(exc.__cause__, (msgspec.ValidationError, msgspec.DecodeError))
        else:
            assert decoder(encoder(decoded)) == decoded


@given(
    st.dictionaries(st.text(min_size=1, max_size=3), _json | st.none(), max_size=5),
    st.dictionaries(st.text(min_size=1, max_size=3), _json | st.none(), max_size=5),
)
def test_merge_semantics(current: dict[str, Any], updates: dict[str, Any]) -> None:
    """merge: updates overwrite, None deletes, untouched keys stay; inputs are not mutated."""
    current = {k: v for k, v in current.items() if v is not None}
    before = dict(current)
    merged = merge_variables(
        current, updates, max_bytes=10**9, max_depth=64, max_string_bytes=10**6
    )
    assert current == before
    for key, value in updates.items():
        assert merged.get(key) == value if value is not None else key not in merged
    for key in set(current) - set(updates):
        assert merged[key] == current[key]


def test_merge_rejects_non_mapping() -> None:
    """Updates must be a mapping."""
    with pytest.raises(InvalidParamsError):
        merge_variables({}, [1], max_bytes=10, max_depth=1, max_string_bytes=1)  # type: ignore[arg-type]


def test_to_wire_variables_do_not_override_reserved_meta() -> None:
    """Reserved _meta keys win over variables of the same name."""
    key = "io.modelcontextprotocol/related-task"
    record = _record(
        task=Task(
            task_id="t",
            status=TaskStatus.WORKING,
            created_at="c",
            last_updated_at="u",
            ttl=None,
            meta={key: {"taskId": "t"}},
        ),
        variables={key: "spoof", "v": 1},
    )
    assert record.to_wire(include_variables=True)["_meta"] == {key: {"taskId": "t"}, "v": 1}
