"""The state machine of DESIGN §4, pair by pair."""

from __future__ import annotations

import itertools

import pytest

from taskstore import InvalidTransitionError, TaskStatus, can_transition, validate_transition
from taskstore.states import TERMINAL_STATUSES

W, IR, C, F, X = (
    TaskStatus.WORKING,
    TaskStatus.INPUT_REQUIRED,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
)
ALLOWED = {(W, IR), (W, C), (W, F), (W, X), (IR, W), (IR, C), (IR, F), (IR, X)}
ALL_PAIRS = list(itertools.product(TaskStatus, repeat=2))


def test_there_are_25_pairs_and_8_allowed() -> None:
    """The table has 5×5 cells, exactly 8 of them allowed."""
    assert len(ALL_PAIRS) == 25
    assert sum(can_transition(a, b) for a, b in ALL_PAIRS) == 8


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS, ids=lambda s: s.value)
def test_every_pair_matches_the_table(source: TaskStatus, target: TaskStatus) -> None:
    """Each of the 25 pairs is allowed or refused exactly as DESIGN §4 says."""
    expected = (source, target) in ALLOWED
    assert can_transition(source, target) is expected
    if expected:
        validate_transition("t-1", source, target)
    else:
        with pytest.raises(InvalidTransitionError) as info:
            validate_transition("t-1", source, target)
        assert (info.value.task_id, info.value.from_status, info.value.to_status) == (
            "t-1",
            source.value,
            target.value,
        )
        assert info.value.code == -32602


def test_status_values_and_identity() -> None:
    """Statuses are str-valued: the wire strings, with `cancelled` spelled with two l's."""
    assert [s.value for s in TaskStatus] == [
        "working",
        "input_required",
        "completed",
        "failed",
        "cancelled",
    ]
    assert TaskStatus("working") is TaskStatus.WORKING
    assert TaskStatus.CANCELLED == "cancelled"
    assert str(TaskStatus.INPUT_REQUIRED) == "input_required"


def test_terminal_statuses() -> None:
    """completed, failed and cancelled are terminal; working and input_required are not."""
    assert {C, F, X} == TERMINAL_STATUSES
    assert [s.is_terminal for s in TaskStatus] == [False, False, True, True, True]


def test_string_statuses_accepted() -> None:
    """validate_transition accepts wire strings as well as enum members."""
    assert can_transition("working", "completed")  # type: ignore[arg-type]
    with pytest.raises(InvalidTransitionError):
        validate_transition("t", "completed", "working")  # type: ignore[arg-type]
