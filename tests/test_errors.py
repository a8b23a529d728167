"""The exception tree and its JSON-RPC mapping (DESIGN §7)."""

from __future__ import annotations

import pytest

import taskstore
from taskstore import errors

CODES = {
    errors.TaskNotFoundError: -32602,
    errors.InvalidTransitionError: -32602,
    errors.InvalidParamsError: -32602,
    errors.VariablesTooLargeError: -32602,
    errors.ResultTooLargeError: -32602,
    errors.InvalidCursorError: -32602,
    errors.NotReadyError: -32602,
    errors.TaskCancelledError: -32602,
    errors.AnonymousAccessError: -32600,
    errors.QuotaExceededError: -32010,
    errors.ConflictError: -32603,
    errors.BackendError: -32603,
    errors.ConfigurationError: None,
    errors.MissingDependencyError: None,
}


@pytest.mark.parametrize("cls", list(CODES), ids=lambda c: c.__name__)
def test_every_error_has_its_code_and_root(cls: type[errors.TaskStoreError]) -> None:
    """Each class derives from TaskStoreError and carries the code DESIGN §7 gives it."""
    assert issubclass(cls, errors.TaskStoreError)
    assert cls.code == CODES[cls]
    assert cls.__doc__


def test_every_public_error_is_exported() -> None:
    """Every error class in errors.__all__ is re-exported from taskstore."""
    for name in errors.__all__:
        assert getattr(taskstore, name) is getattr(errors, name)


def test_size_errors_are_invalid_params() -> None:
    """Size errors are InvalidParamsError subclasses."""
    assert issubclass(errors.ResultTooLargeError, errors.InvalidParamsError)
    assert issubclass(errors.VariablesTooLargeError, errors.InvalidParamsError)


def test_missing_dependency_is_an_import_error() -> None:
    """`except ImportError` catches a missing driver."""
    assert issubclass(errors.MissingDependencyError, ImportError)
    assert issubclass(errors.MissingDependencyError, errors.ConfigurationError)


def test_to_jsonrpc_shapes() -> None:
    """to_jsonrpc gives {code, message} and adds data only when present."""
    assert errors.InvalidParamsError("bad").to_jsonrpc() == {"code": -32602, "message": "bad"}
    assert errors.TaskNotFoundError("t1").to_jsonrpc() == {
        "code": -32602,
        "message": "Task not found: t1",
        "data": {"taskId": "t1"},
    }
    assert errors.ConfigurationError("x").to_jsonrpc()["code"] == -32603


def test_quota_error_is_a_server_defined_code_saying_limit_and_retry() -> None:
    """A quota rejection has its own code in the server-error range (not -32603, none of
    taskstore's or MCP's other codes), says the limit and that the client may retry, and
    carries the limit as data."""
    assert errors.QUOTA_EXCEEDED == -32010
    assert -32099 <= errors.QUOTA_EXCEEDED <= -32000
    assert errors.QUOTA_EXCEEDED not in {
        errors.HEADER_MISMATCH,
        errors.MISSING_CAPABILITY,
        errors.UNSUPPORTED_VERSION,
        -32000,  # the HTTP endpoint's "server busy"
    }
    assert errors.QuotaExceededError.of_limit(7).to_jsonrpc() == {
        "code": -32010,
        "message": "Task quota exceeded: at most 7 live tasks per owner; retry when some have "
        "ended or expired",
        "data": {"limit": 7},
    }


def test_cancelled_error_data() -> None:
    """A cancelled task's result error says so and carries taskId and status."""
    error = errors.TaskCancelledError("t9").to_jsonrpc()
    assert error["code"] == -32602
    assert "cancelled" in error["message"]
    assert error["data"] == {"taskId": "t9", "status": "cancelled"}


def test_transition_error_fields() -> None:
    """InvalidTransitionError names the task and both statuses."""
    exc = errors.InvalidTransitionError("t", "completed", "working")
    assert exc.to_jsonrpc()["data"] == {"taskId": "t", "from": "completed", "to": "working"}
    assert "completed -> working" in str(exc)


def test_backend_error_keeps_driver_details_off_the_wire() -> None:
    """BackendError's text stays in logs; to_jsonrpc sends a generic message."""
    exc = errors.BackendError("redis at 10.0.0.5:6379: connection refused")
    assert "10.0.0.5" in str(exc)
    assert exc.to_jsonrpc() == {
        "code": -32603,
        "message": "Internal error: the task storage failed",
    }
