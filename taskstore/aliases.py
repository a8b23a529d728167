"""Type aliases shared across the package (JSON values, JSON-RPC ids), defined once."""

from __future__ import annotations

from typing import Any, Union

__all__ = ["JsonDict", "RequestId"]

#: A JSON object as decoded by msgspec (string keys, any JSON values).
JsonDict = dict[str, Any]
#: A JSON-RPC request id: a string or an integer (never a boolean, never a float).
RequestId = Union[str, int]  # noqa: UP007 - a runtime alias; `|` needs 3.10 at runtime too
