"""The Redis backend's Lua scripts and its one mapping of redis-py errors.

Scripts are package data (``lua/*.lua``, each opening with its KEYS, ARGV, replies and errors),
registered once per backend with ``register_script`` and run with ``EVALSHA``. Their error
replies (``TSCONFLICT <actual>``, ``TSQUOTA <limit>``, ``TSNOTFOUND``) become contract errors;
every other exception redis-py raises becomes a :class:`~taskstore.errors.BackendError` through
:func:`driver_errors`, with the driver's exception as ``__cause__``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import redis.exceptions

from taskstore.backends.base import RecordKey, quota_exceeded
from taskstore.errors import BackendError, RecordNotFound

__all__ = [
    "DRIVER_ERRORS",
    "SCRIPT_NAMES",
    "Conflict",
    "Scripts",
    "backend_error",
    "driver_errors",
    "script_source",
    "untyped",
]

#: The primitives, one file each under ``lua/``.
SCRIPT_NAMES = ("create", "put", "put_if_version", "delete", "list", "cleanup")

# Every exception class redis-py defines, not only RedisError's subtree: RedisClusterException
# (cluster routing) and ChildDeadlockedError live outside it. OSError covers anything the
# socket layer lets through unwrapped.
DRIVER_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    *sorted(
        {
            value
            for value in vars(redis.exceptions).values()
            if isinstance(value, type) and issubclass(value, Exception)
        },
        key=lambda cls: cls.__name__,
    ),
)


def backend_error(operation: str, exc: BaseException) -> BackendError:
    """The :class:`BackendError` for a driver exception raised by ``operation`` (the caller
    chains ``exc``)."""
    return BackendError(f"Redis {operation} failed: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def driver_errors(operation: str) -> Iterator[None]:
    """Raise every driver exception of the block as :func:`backend_error`, chained."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise backend_error(operation, exc) from exc


def untyped(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` as a plain callable.

    redis-py's annotations change between releases (``pubsub`` and ``get_nodes`` were untyped
    until 8.x, ``Script.__call__`` narrows its key types in some): calling through this keeps
    the type check independent of the installed release, with no ``type: ignore`` that is
    wrong on the next one.
    """
    return method


@functools.cache
def script_source(name: str) -> str:
    """The Lua source of primitive ``name``: the shared helpers followed by the script."""
    folder = importlib.resources.files("taskstore.backends").joinpath("lua")
    helpers = folder.joinpath("_lib.lua").read_text(encoding="utf-8")
    return helpers + "\n" + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")


class Conflict(NamedTuple):
    """A ``TSCONFLICT`` script error, returned so the caller can name expected and actual."""

    actual: int


def _error_code(exc: Exception) -> tuple[str, str] | None:
    """Split one of our script errors ("TSCONFLICT 3") into code and argument, else None."""
    text = str(exc)
    code, _, argument = text.partition(" ")
    if code in ("TSCONFLICT", "TSQUOTA", "TSNOTFOUND"):
        return code, argument.strip()
    return None


class Scripts:
    """Every primitive, registered on one client (``register_script`` sends nothing yet)."""

    def __init__(self, client: Any) -> None:
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}

    def run(self, name: str, key: RecordKey, keys: Sequence[str], args: Sequence[object]) -> Any:
        """Run script ``name``; return its reply, or :class:`Conflict` for ``TSCONFLICT``.

        :param key: the record the call is about (named by ``RecordNotFound``).
        :raises QuotaExceededError: ``TSQUOTA``.
        :raises RecordNotFound: ``TSNOTFOUND``.
        :raises BackendError: any other error from the driver or the server.
        """
        with driver_errors(name):
            try:
                return untyped(self._scripts[name])(keys=keys, args=args)
            except redis.exceptions.ResponseError as exc:
                parsed = _error_code(exc)
                if parsed is None:
                    raise
                code, argument = parsed
                if code == "TSCONFLICT":
                    return Conflict(int(argument))
                if code == "TSQUOTA":
                    raise quota_exceeded(int(argument)) from None
                raise RecordNotFound(key) from None
