"""The backend contract (DESIGN §6): a small, versioned key-value store.

A backend knows nothing of tasks: no state machine, no merging, no owner policy. It stores
opaque bytes under ``(owner, task_id)`` keys with a version, an absolute expiry and a sort key,
plus an optional second blob (the *outcome*) that is only transferred when asked for. All domain
logic lives in :class:`~taskstore.store.TaskStore`.

Rules every backend obeys (``taskstore.testing`` checks them all):

- Versions start at 1 for a new key and grow by exactly 1 on every write.
- A record whose ``expires_at_ms <= now_ms`` is absent for every operation (reads, writes,
  listing, the quota) even before the backend reclaims its space.
- ``now_ms`` is passed by the store from its injectable clock; when omitted a backend uses its
  own wall clock.
- Every method is thread-safe; every driver error is raised as
  :class:`~taskstore.errors.BackendError` with the driver's exception as ``__cause__``.
- Transient driver faults (connection refused or reset, timeouts, throttling) are retried
  with jittered backoff until the call's retry deadline (:func:`retry_deadline`), and a retry
  never applies a write twice: a replayed write that finds its own earlier attempt applied
  answers as that attempt would have. What is left is raised as ``BackendError`` whose
  ``applied`` is ``False`` only when no attempt can have been applied (``None`` otherwise)
  and whose ``transient`` says whether retrying later may help.
- Expiries are ``None`` or integers from 0 to :data:`MAX_EXPIRES_AT_MS` (year 9999), and every
  backend stores every one of them exactly; others are refused with ``InvalidParamsError``
  (:func:`check_expiry`) before anything is sent.

Optional capabilities are Protocols of their own, which a backend satisfies by having their
methods (check with ``isinstance``): :class:`ScanningBackend`, a paginated pass over every
owner's records (for stale-task recovery and operator views).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import enum
import itertools
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote, unquote_to_bytes

import msgspec

from taskstore import telemetry as _telemetry
from taskstore.config import DEFAULT_RETRY_DEADLINE_MS, MAX_EXPIRES_AT_MS
from taskstore.errors import InvalidCursorError, InvalidParamsError, QuotaExceededError

__all__ = [
    "DEFAULT_RETRY_DEADLINE_MS",
    "KEEP",
    "MAX_EXPIRES_AT_MS",
    "EventListener",
    "Keep",
    "ListPosition",
    "Listeners",
    "RecordKey",
    "ScanPage",
    "ScanningBackend",
    "StorageBackend",
    "VersionedRecord",
    "Waiters",
    "check_expiry",
    "check_scan_limit",
    "decode_key_part",
    "decode_scan_cursor",
    "encode_key_part",
    "encode_scan_cursor",
    "key_bytes",
    "key_str",
    "note_retry",
    "now_ms",
    "quota_exceeded",
    "retry_deadline",
    "retrying_until",
    "write_token",
]

#: A record's key: ``(owner, task_id)``. Both parts are arbitrary strings.
RecordKey = tuple[str, str]

#: Receives the ``event`` bytes of a write (see :meth:`StorageBackend.put`).
EventListener = Callable[[bytes], None]

_log = logging.getLogger("taskstore.backends")

_T = TypeVar("_T")

# The absolute time.monotonic() deadline of the backend calls made in this context; set by
# the store around each of its operations. A context variable, not a backend attribute: two
# stores (or a store's wait and its other calls) sharing one backend each keep their own.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "taskstore_retry_deadline", default=None
)


def retry_deadline() -> float:
    """The ``time.monotonic()`` instant until which a backend call starting now may retry
    transient faults: the one :func:`retrying_until` set, else
    :data:`DEFAULT_RETRY_DEADLINE_MS` from now. Backends read it once, when a call starts."""
    deadline = _deadline.get()
    if deadline is None:
        return time.monotonic() + DEFAULT_RETRY_DEADLINE_MS / 1000
    return deadline


@contextlib.contextmanager
def retrying_until(deadline: float) -> Iterator[None]:
    """Let the backend calls made inside the block retry transient faults until the
    ``time.monotonic()`` instant ``deadline`` (a deadline already passed means one attempt
    each). :class:`~taskstore.store.TaskStore` wraps each of its operations in one, so an
    operation's backend calls share its ``StoreConfig.retry_deadline_ms``."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def note_retry(backend: str, operation: str) -> None:
    """Report one retry of a transient fault to telemetry (``taskstore.backend.retries``,
    :mod:`taskstore.telemetry`): a backend calls it each time it is about to repeat a call
    that failed transiently, before its backoff.

    :param backend: the backend's ``db.system.name`` (``"redis"``, ``"aws.dynamodb"``,
        ``"sqlite"``, ``"postgresql"``; a third-party backend its own name).
    :param operation: the backend's name of the call (a small fixed set: never a key).
    """
    _telemetry.backend_retry(backend, operation)


def check_expiry(expires_at_ms: object) -> None:
    """The one rule for expiries every backend applies before sending anything.

    :raises InvalidParamsError: not ``None`` nor an integer from 0 to
        :data:`MAX_EXPIRES_AT_MS`.
    """
    if expires_at_ms is not None and (
        isinstance(expires_at_ms, bool)
        or not isinstance(expires_at_ms, int)
        or not 0 <= expires_at_ms <= MAX_EXPIRES_AT_MS
    ):
        raise InvalidParamsError(
            f"expires_at_ms must be an integer from 0 to {MAX_EXPIRES_AT_MS} (year 9999)"
        )


class Listeners:
    r"""A thread-safe, copy-on-write set of :data:`EventListener`\ s for backends to share.

    :meth:`publish` iterates a snapshot without a lock, so listeners may add or remove
    listeners while being called; a listener that raises is logged and never stops the others
    (nor the write that published).
    """

    def __init__(self) -> None:
        self._listeners: tuple[EventListener, ...] = ()
        self._lock = threading.Lock()

    def add(self, listener: EventListener) -> Callable[[], None]:
        """Add ``listener``; return a function that removes it (idempotent)."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def remove() -> None:
            self.remove(listener)

        return remove

    def remove(self, listener: EventListener) -> None:
        """Remove one registration of ``listener``, if any."""
        with self._lock:
            listeners = list(self._listeners)
            if listener in listeners:
                listeners.remove(listener)
            self._listeners = tuple(listeners)

    def clear(self) -> None:
        """Remove every listener."""
        with self._lock:
            self._listeners = ()

    def publish(self, event: bytes) -> None:
        """Call every listener with ``event``."""
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken listener must never break a write
                _log.exception("taskstore event listener failed")


_K = TypeVar("_K")


class Waiters(Generic[_K]):
    """Threads waiting for a change of a key, each on a :class:`threading.Event`, for
    backends' :meth:`~StorageBackend.wait_for_change`. Thread-safe.

    A waiter registers with :meth:`add` *before* it reads the version it waits past, so a
    write between the read and the wait still sets its event; it unregisters with
    :meth:`remove` when done.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[_K, set[threading.Event]] = {}
        self._closed = False

    def add(self, key: _K) -> threading.Event:
        """An event set by the next :meth:`wake` of ``key`` (or :meth:`wake_all`); already
        set after :meth:`close`."""
        event = threading.Event()
        with self._lock:
            if self._closed:
                event.set()
            else:
                self._waiting.setdefault(key, set()).add(event)
        return event

    def remove(self, key: _K, event: threading.Event) -> None:
        """Unregister an event of :meth:`add`."""
        with self._lock:
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiting[key]

    def wake(self, *keys: _K) -> None:
        """Set the events of every waiter on ``keys``."""
        with self._lock:
            woken = [event for key in keys for event in self._waiting.get(key, ())]
        for event in woken:
            event.set()

    def wake_all(self) -> None:
        """Set every waiter's event (the change feed was lost or re-established: everyone
        re-reads)."""
        with self._lock:
            woken = [event for events in self._waiting.values() for event in events]
        for event in woken:
            event.set()

    def close(self) -> None:
        """Wake every waiter for good: later :meth:`add` calls return set events."""
        with self._lock:
            self._closed = True
        self.wake_all()
        with self._lock:
            self._waiting.clear()


class Keep(enum.Enum):
    """Type of :data:`KEEP`."""

    KEEP = "keep"


#: Sentinel for "leave the stored value as it is" (e.g. the expiry on a compare-and-set).
KEEP = Keep.KEEP


class ListPosition(NamedTuple):
    """A keyset position in an owner's listing: the sort key and task id of the last record seen.

    Listings run newest first: by ``sort_ms`` descending, then ``task_id`` descending.
    """

    sort_ms: int
    task_id: str


class VersionedRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One stored record as a backend returns it.

    :ivar data: the record bytes, exactly as written.
    :ivar version: 1 after the first write, +1 on every write.
    :ivar expires_at_ms: absolute expiry in epoch ms, ``None`` for never.
    :ivar key: the ``(owner, task_id)`` key (backends always fill it in).
    :ivar sort_ms: the listing sort key (the task's creation time; backends always fill it in).
    :ivar outcome: the outcome blob, only when asked for (``include_outcome=True``) and stored.
    """

    data: bytes
    version: int
    expires_at_ms: int | None
    key: tuple[str, str] = ("", "")
    sort_ms: int = 0
    outcome: bytes | None = None


@runtime_checkable
class StorageBackend(Protocol):
    """What :class:`~taskstore.store.TaskStore` needs from storage.

    Backends are plain classes satisfying this Protocol; ``taskstore.testing`` is the executable
    form of the contract. Intended differences between backends are the declared attributes
    below, never silent behaviour; optional capabilities are Protocols of their own
    (:class:`ScanningBackend`).
    """

    #: Largest variables map (compact JSON bytes) this backend can hold, or ``None`` for no
    #: backend-specific cap. The store uses the smaller of this and its own configuration.
    max_variable_bytes: int | None
    #: Largest outcome (compact JSON bytes) this backend can hold, or ``None``.
    max_result_bytes: int | None

    def get(
        self, key: RecordKey, *, include_outcome: bool = False, now_ms: int | None = None
    ) -> VersionedRecord:
        """Return the live record at ``key``; one round trip.

        :param include_outcome: also transfer the outcome blob (otherwise it never leaves
            storage).
        :raises RecordNotFound: absent or expired.
        """
        ...

    def put(
        self,
        key: RecordKey,
        data: bytes,
        expires_at_ms: int | None,
        *,
        sort_ms: int | None = None,
        outcome: bytes | None = None,
        event: bytes | None = None,
        now_ms: int | None = None,
    ) -> int:
        """Write ``data`` unconditionally and atomically; return the new version.

        A missing or expired key starts again at version 1. ``sort_ms`` defaults to ``now_ms``
        for a new key and is kept for an existing one. ``outcome=None`` keeps a stored outcome
        (an expired record's outcome is gone with it). When ``event`` is given it is delivered,
        after the write, to every listener of this backend (in every process sharing the
        storage) and wakes :meth:`wait_for_change` callers on ``key``.

        :raises InvalidParamsError: an expiry :func:`check_expiry` refuses (nothing sent).
        """
        ...

    def put_if_version(
        self,
        key: RecordKey,
        data: bytes,
        expected: int,
        expires_at_ms: int | Keep | None = KEEP,
        *,
        outcome: bytes | None = None,
        event: bytes | None = None,
        now_ms: int | None = None,
    ) -> int:
        """Compare-and-set: write only if the live version is ``expected``; return the new one.

        ``expires_at_ms`` defaults to keeping the stored expiry; ``outcome`` and ``event`` as
        in :meth:`put`.

        :raises VersionConflict: with the actual version (0 when absent or expired).
        :raises InvalidParamsError: an expiry :func:`check_expiry` refuses (nothing sent).
        """
        ...

    def create(
        self,
        key: RecordKey,
        data: bytes,
        expires_at_ms: int | None,
        *,
        sort_ms: int,
        max_live: int | None = None,
        event: bytes | None = None,
        now_ms: int | None = None,
    ) -> int:
        """Insert a new record (version 1) if ``key`` is not live and the owner (``key[0]``)
        holds fewer than ``max_live`` live records; both checks and the insert are one atomic
        step. Expired records never count.

        :raises VersionConflict: the key is live (``actual`` = its version).
        :raises QuotaExceededError: the owner already holds ``max_live`` live records.
        :raises InvalidParamsError: an expiry :func:`check_expiry` refuses (nothing sent).
        """
        ...

    def delete(self, key: RecordKey) -> bool:
        """Remove ``key`` (and its outcome); return ``True`` if a record was removed."""
        ...

    def list_by_prefix(
        self,
        owner: str,
        after: ListPosition | None = None,
        limit: int = 50,
        *,
        now_ms: int | None = None,
    ) -> list[VersionedRecord]:
        """Return up to ``limit`` live records of ``owner``, newest first (``sort_ms`` then
        ``task_id``, both descending), strictly after the keyset position ``after``.

        Outcomes are never transferred. The cost is proportional to the page, not to the
        owner's or the store's size.

        :raises RecordNotFound: ``after`` names a record that is no longer live (a stale
            cursor must not silently restart or skip).
        """
        ...

    def cleanup_expired(self, now_ms: int | None = None) -> int:
        """Remove every expired record; return how many. Costs O(expired)."""
        ...

    def wait_for_change(self, key: RecordKey, version: int, timeout_s: float) -> None:
        """Block until the record at ``key`` may differ from ``version``, or ``timeout_s``.

        Returns promptly after any write to ``key`` that carried an ``event``. It may return
        early (callers always re-read), but never misses a write made after the caller read
        ``version``.

        :raises BackendError: the storage failed (transient faults only once the retry
            deadline passed; the store's waits then try again until their own timeout).
        """
        ...

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """Deliver every write ``event`` to ``listener``; return a function that removes it.

        Listeners run on a backend thread (or the writer's thread); they must be quick and must
        not raise (exceptions are logged and dropped).
        """
        ...

    def close(self) -> None:
        """Release connections and threads; the backend is unusable afterwards."""
        ...


class ScanPage(NamedTuple):
    """One page of :meth:`ScanningBackend.scan`.

    :ivar records: live records of any owners, in the backend's scan order (outcomes are
        never transferred); at most the ``limit`` asked for, possibly fewer (even none) with
        more to come.
    :ivar next_cursor: where the next page starts; ``None`` once the pass is complete.
    """

    records: list[VersionedRecord]
    next_cursor: str | None


@runtime_checkable
class ScanningBackend(Protocol):
    """Optional capability: a paginated pass over the live records of *every* owner.

    :meth:`~taskstore.TaskStore.fail_stale` without an owner needs it (and so does stale-task
    recovery in the tool runner); a backend without it is refused there with
    ``ConfigurationError``. ``taskstore.testing.BackendContract`` tests it on every backend
    that has it and skips it, saying so, on one that does not.
    """

    def scan(
        self, cursor: str | None = None, limit: int = 100, *, now_ms: int | None = None
    ) -> ScanPage:
        """Return one page of a pass over every owner's live records.

        Start with ``cursor=None`` and pass each page's ``next_cursor`` to get the next one,
        until it is ``None``. The order is the backend's own but stable: a record present for
        the whole pass is returned exactly once (unless a :meth:`~StorageBackend.put` moves
        its ``sort_ms`` meanwhile, which the store never does); one created or deleted during
        the pass is returned at most once. A cursor is an opaque,
        backend-defined *position*, not a record: it stays valid when records (its own
        included) are written, deleted or expire meanwhile. Expired records are skipped.

        Pages never hold more than ``limit`` records, but may hold fewer, even none, and
        still carry a cursor (a backend bounds the work of one call: DynamoDB pages by the
        items it read, not by those it returns). Memory use is bounded by the page, never by
        the store; where the backend has no index across owners a pass reads the whole store
        (said in the backend's docstring, with the cost of a page).

        :param limit: the largest page, an integer of at least 1.
        :param now_ms: the caller's clock (records expired at it are skipped).
        :raises InvalidCursorError: ``cursor`` is not one this kind of backend issued
            (malformed, or another backend's); never a silent restart.
        :raises InvalidParamsError: ``limit`` is not a positive integer.
        :raises BackendError: the storage failed.
        """
        ...


def encode_key_part(text: str) -> str:
    """Encode an owner or task id for use inside a storage key, injectively: the one key
    encoding every backend uses.

    Percent-encoding of the UTF-8 bytes of everything except ``A-Z a-z 0-9 _ . - ~``: the
    result never contains ``:``, ``/``, ``#``, ``{`` or ``}``, so owners that are prefixes of
    each other or contain separators can never collide or break a Redis hash tag. Total over
    every ``str``: lone surrogates (no UTF-8 form) are encoded through ``surrogatepass``, still
    injectively. (:class:`~taskstore.store.TaskStore` refuses such owners and task ids with
    ``InvalidParamsError`` before any backend call; a backend used directly may still get them.)
    """
    return quote(key_bytes(text), safe="")


def decode_key_part(part: str) -> str:
    """The owner or task id :func:`encode_key_part` made ``part`` from (its inverse)."""
    return key_str(unquote_to_bytes(part))


def key_bytes(text: str) -> bytes:
    """``text`` as key bytes: UTF-8, lone surrogates through ``surrogatepass`` (which keeps every
    ``str`` encodable and preserves code point order under memcmp). :func:`key_str` inverts it."""
    return text.encode("utf-8", "surrogatepass")


def key_str(data: bytes) -> str:
    """The text of key bytes made by :func:`key_bytes`."""
    return data.decode("utf-8", "surrogatepass")


class _WriteTokens:
    """Write tokens: 8 random bytes drawn once per process (again in a forked child) and a
    4-byte counter, so a token costs no system call (``secrets.token_bytes`` per write was a
    ``getrandom`` call, about 3% of a Redis-backed server's time). Unique among the writes a
    retry could be confused with: another process's tokens differ in the random part, this
    process's in the counter, which wraps only after 2**32 writes."""

    def __init__(self) -> None:
        self._reseed()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = secrets.token_bytes(8)
        self._counter = itertools.count()

    def next(self) -> bytes:
        # next() on itertools.count is atomic under the GIL: no two threads get one number.
        return self._prefix + (next(self._counter) & 0xFFFFFFFF).to_bytes(4, "big")


_write_tokens = _WriteTokens()


def write_token() -> bytes:
    """A fresh 12-byte write token (one per write call, kept across its resends): what lets a
    resent write recognise its own earlier attempt as applied."""
    return _write_tokens.next()


def now_ms(given: int | None) -> int:
    """``given``, or the wall clock in epoch ms when ``None`` (backends called without the
    store's clock)."""
    return time.time_ns() // 1_000_000 if given is None else given


def quota_exceeded(max_live: int) -> QuotaExceededError:
    """The error every backend raises when an owner already holds ``max_live`` live records."""
    return QuotaExceededError.of_limit(max_live)


def check_scan_limit(limit: object) -> int:
    """``limit`` if it is a valid :meth:`ScanningBackend.scan` page size.

    :raises InvalidParamsError: not an integer of at least 1 (booleans refused).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidParamsError(f"scan limit must be a positive integer, got {limit!r}")
    return limit


_cursor_encoder = msgspec.msgpack.Encoder()
# Far more than any cursor a backend issues (a DynamoDB key is at most ~3 KB): anything longer
# is refused before decoding.
_MAX_CURSOR_CHARS = 8192


def encode_scan_cursor(fields: tuple[Any, ...]) -> str:
    """An opaque scan cursor carrying ``fields`` (a tuple of ints, strings and bytes, the
    first being the backend's format tag): MessagePack in unpadded URL-safe base64."""
    raw = _cursor_encoder.encode(fields)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_scan_cursor(cursor: object, decoder: msgspec.msgpack.Decoder[_T]) -> _T:
    """The fields of a cursor made by :func:`encode_scan_cursor`, typed by ``decoder`` (whose
    type should open with a ``Literal`` format tag, so one backend's cursor is malformed for
    another).

    :raises InvalidCursorError: not a string, empty, too long, or not of ``decoder``'s type.
    """
    if not isinstance(cursor, str) or not cursor or len(cursor) > _MAX_CURSOR_CHARS:
        raise InvalidCursorError("Invalid scan cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.ValidationError, msgspec.DecodeError):
        raise InvalidCursorError("Invalid scan cursor") from None
