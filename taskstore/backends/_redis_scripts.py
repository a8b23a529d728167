"""The Redis backend's Lua scripts.

Scripts are package data (``lua/*.lua``, each opening with its KEYS, ARGV, replies and errors),
registered once per backend with ``register_script`` and run with ``EVALSHA`` through the
backend's :class:`~taskstore.backends._redis_faults.Retrier` (retries of transient faults, the
one mapping of driver errors). Their error replies (``TSCONFLICT <actual>``, ``TSQUOTA
<limit>``, ``TSNOTFOUND``) become contract errors; every other exception redis-py raises
becomes a :class:`~taskstore.errors.BackendError`, with the driver's exception as
``__cause__``.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import redis.exceptions

from taskstore.backends._redis_faults import Retrier
from taskstore.backends.base import RecordKey, quota_exceeded
from taskstore.errors import RecordNotFound

__all__ = [
    "SCRIPT_NAMES",
    "Conflict",
    "Scripts",
    "script_source",
    "untyped",
]

#: The primitives, one file each under ``lua/``.
SCRIPT_NAMES = ("create", "put", "put_if_version", "delete", "list", "cleanup", "scan")
#: The primitives that write (the others only read): a failed call of one of these may have
#: been applied.
_WRITES = frozenset({"create", "put", "put_if_version", "delete", "cleanup"})


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
    """Every primitive, registered on one client (``register_script`` sends nothing yet).

    :param retrier: runs every call (retries, error mapping).
    :param sender: the client each call is sent through (the calling thread's, see
        :class:`~taskstore.backends._redis_client.ThreadClients`); default: the one registered on.
    """

    def __init__(
        self, client: Any, retrier: Retrier, sender: Callable[[], Any] | None = None
    ) -> None:
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}
        self._retrier = retrier
        self._sender = sender

    def run(self, name: str, key: RecordKey, keys: Sequence[str], args: Sequence[object]) -> Any:
        """Run script ``name``; return its reply, or :class:`Conflict` for ``TSCONFLICT``.

        Transient faults are retried with the same arguments (write token included) until
        the retry deadline.

        :param key: the record the call is about (named by ``RecordNotFound``).
        :raises QuotaExceededError: ``TSQUOTA``.
        :raises RecordNotFound: ``TSNOTFOUND``.
        :raises BackendError: any other error from the driver or the server.
        """
        script: Callable[..., Any] = untyped(self._scripts[name])

        def call() -> Any:
            try:
                if self._sender is None:
                    return script(keys=keys, args=args)
                return script(keys=keys, args=args, client=self._sender())
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

        return self._retrier.call(name, call, write=name in _WRITES)
