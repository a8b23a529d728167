"""Task ids, the one rule for record keys, and list cursors (the store's private helpers)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
import uuid

import msgspec

from taskstore.backends.base import ListPosition
from taskstore.errors import InvalidCursorError, InvalidParamsError

__all__ = [
    "decode_cursor",
    "encode_cursor",
    "is_key_text",
    "key_text",
    "new_task_id",
    "printable",
]

_random = threading.local()
_RANDOM_BATCH = 16 * 256
_cursor_encoder = msgspec.json.Encoder()
_cursor_decoder = msgspec.json.Decoder(tuple[int, int, str, str])
_CURSOR_FORMAT = 1


def new_task_id() -> str:
    """A random UUID4 string (122 random bits) from a per-thread ``os.urandom`` batch.

    One ``os.urandom`` call per id releases the GIL on every create; with many threads creating
    at once that convoys them (measured: 8-thread create throughput fell to 0.6× of one thread).
    The batch is bound to the process id: a forked child (gunicorn workers) must never replay
    its parent's random bytes.
    """
    state = _random.__dict__
    offset = state.get("offset", _RANDOM_BATCH)
    pid = os.getpid()
    if offset >= _RANDOM_BATCH or state.get("pid") != pid:
        state["batch"] = os.urandom(_RANDOM_BATCH)
        state["pid"] = pid
        offset = 0
    state["offset"] = offset + 16
    return str(uuid.UUID(bytes=state["batch"][offset : offset + 16], version=4))


def is_key_text(value: str) -> bool:
    """Whether ``value`` can be part of a record key on every backend: the one rule for keys,
    checked before any backend call. Lone surrogates (``"\\ud800"``, which JSON and some
    decoders let through) have no UTF-8 form and every backend would fail on them
    differently: no task can have such an owner or id."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def key_text(value: object, name: str) -> str:
    """``value`` if it can be part of a new record's key on every backend, else
    InvalidParamsError (:func:`is_key_text`; ``create`` refuses such owners up front, every
    other operation treats them as owning nothing)."""
    if not isinstance(value, str):
        raise InvalidParamsError(f"{name} must be a string")
    if not is_key_text(value):
        raise InvalidParamsError(f"{name} must be valid Unicode text (no lone surrogates)")
    return value


def printable(value: str) -> str:
    """``value`` with any lone surrogate spelled ``\\udXXX``: safe to put in an error
    message, which the wire's UTF-8 JSON must be able to carry."""
    return value if is_key_text(value) else value.encode("utf-8", "backslashreplace").decode()


def _owner_tag(owner: str) -> str:
    # surrogatepass: no cursor is ever issued to an owner with lone surrogates, but checking
    # one against such an owner must answer "foreign cursor", not fail.
    return hashlib.blake2b(owner.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def encode_cursor(position: ListPosition, owner: str) -> str:
    """An opaque cursor for the page after ``position``, bound to ``owner``."""
    raw = _cursor_encoder.encode(
        (_CURSOR_FORMAT, position.sort_ms, position.task_id, _owner_tag(owner))
    )
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: object, owner: str) -> ListPosition:
    """The position a cursor of ``owner`` points after.

    :raises InvalidCursorError: malformed, or issued to another owner.
    """
    if not isinstance(cursor, str) or not cursor or len(cursor) > 4096:
        raise InvalidCursorError("Invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fmt, sort_ms, task_id, tag = _cursor_decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.ValidationError, msgspec.DecodeError):
        raise InvalidCursorError("Invalid cursor") from None
    if fmt != _CURSOR_FORMAT or tag != _owner_tag(owner):
        raise InvalidCursorError("Invalid cursor")
    return ListPosition(sort_ms, task_id)
