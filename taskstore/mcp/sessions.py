"""Transport sessions (``Mcp-Session-Id``) and their outbound message boxes.

A session starts with a successful ``initialize`` and is bound to the identity that created it:
later requests must resolve to the same owner, or the session does not exist for them. Each
session has an :class:`Outbox`, the :class:`~taskstore.mcp.notifications.NotificationSender` of
its server → client messages (task status, progress), delivered while the client holds the
session's GET stream open and dropped otherwise (the spec makes them optional; clients poll).

Admission (:meth:`SessionManager.add`) never evicts a session whose end would strand
unfinished work: see :class:`SessionManager`.

**Several workers, one deployment.** Session ids are signed (:meth:`SessionManager.issue`):
128 random bits, the id of the issuing worker, and an HMAC under the deployment's session key
binding the id to the identity that created it. A worker that meets a valid id issued by
another worker (gunicorn with several workers, processes behind a load balancer) adopts the
session (:meth:`SessionManager.adopt`), so a client's session, and an anonymous client's tasks
(owned by its session id), are reachable whichever worker answers, on any durable store. The
key is ``McpWsgiApp(session_key=...)``, else ``$TASKSTORE_SESSION_KEY``, else the store's
:attr:`~taskstore.TaskStore.deployment_key` (shared by every worker opened on the same
storage URL), else random per process (``memory://``: nothing to share). The signature only
tells a deployment's ids from made-up ones; a session's secrecy is its random part, which the
key does not reveal. A session ended on one worker (``DELETE``, eviction, idle expiry) is
refused by that worker from then on; other workers learn of it only by their own idle expiry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import os
import queue
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from taskstore.mcp.auth import Caller
from taskstore.mcp.jsonrpc import JsonDict
from taskstore.store import TaskStore

__all__ = [
    "CLOSE",
    "SESSION_KEY_ENV",
    "Outbox",
    "Session",
    "SessionManager",
    "SessionTableFull",
    "holds_unfinished_tasks",
    "session_binding",
]

_log = logging.getLogger("taskstore.wsgi")

#: Put on an outbox queue to end the stream reading it.
CLOSE: JsonDict = {}

#: The environment variable holding the session-signing key shared by a deployment's workers.
SESSION_KEY_ENV = "TASKSTORE_SESSION_KEY"

_NONCE_BYTES = 16
_WORKER_BYTES = 8
_MAC_BYTES = 12
_ID_BYTES = _NONCE_BYTES + _WORKER_BYTES + _MAC_BYTES  # 36: base64 without padding
_ID_CHARS = _ID_BYTES // 3 * 4


class SessionTableFull(Exception):
    """A valid session could not be adopted: every live session here may not be evicted
    (answer "busy, retry after :attr:`SessionManager.retry_after_s`")."""


def session_binding(caller: Caller) -> str:
    """What a session id is bound to: the authenticated owner, or ``""`` for a session whose
    tasks the session id itself owns (the caller is then identified by the id alone)."""
    if caller.session_id is not None and caller.owner == caller.session_id:
        return ""
    return caller.owner


def _session_key(given: bytes | str | None, store: TaskStore | None) -> bytes:
    if given is None:
        given = os.environ.get(SESSION_KEY_ENV) or None
    if given is None and store is not None and store.deployment_key is not None:
        given = hmac.new(store.deployment_key, b"mcp session ids", hashlib.sha256).digest()
    if given is None:
        return secrets.token_bytes(32)
    return given.encode("utf-8") if isinstance(given, str) else bytes(given)


class Outbox:
    """Server → client messages of one session. Thread-safe.

    :param capacity: messages buffered for a slow stream; beyond it new ones are dropped
        (never blocking the store's writer threads).
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._queue: queue.Queue[JsonDict] | None = None

    def send(self, message: JsonDict) -> None:
        """Queue ``message`` for the open stream; drop it when none is open or it is full."""
        with self._lock:
            target = self._queue
        if target is not None:
            try:
                target.put_nowait(message)
            except queue.Full:
                pass  # a stalled client loses optional notifications, never blocks writers

    def open_stream(self) -> queue.Queue[JsonDict] | None:
        """Claim the session's one stream; ``None`` when a stream is already open (the spec
        allows each message on one stream only)."""
        with self._lock:
            if self._queue is not None:
                return None
            self._queue = queue.Queue(self._capacity)
            return self._queue

    def close_stream(self, stream: queue.Queue[JsonDict]) -> None:
        """Release the stream claimed by :meth:`open_stream`."""
        with self._lock:
            if self._queue is stream:
                self._queue = None

    def end(self) -> None:
        """End the open stream, if any (session deleted or server stopping)."""
        with self._lock:
            target = self._queue
        if target is not None:
            try:
                target.put_nowait(CLOSE)
            except queue.Full:
                # Make room: the stream must learn it is over.
                try:
                    target.get_nowait()
                except queue.Empty:
                    pass
                target.put_nowait(CLOSE)

    @property
    def streaming(self) -> bool:
        """``True`` while a stream is open."""
        with self._lock:
            return self._queue is not None


@dataclass(eq=False)
class Session:
    """One client session.

    :ivar id: the ``Mcp-Session-Id`` (128 random bits, URL-safe).
    :ivar caller: the identity that created it; its ``owner`` owns the session's tasks.
    :ivar protocol_version: the version negotiated by ``initialize``.
    """

    id: str
    caller: Caller
    protocol_version: str
    outbox: Outbox = field(default_factory=Outbox)
    last_seen: float = field(default_factory=time.monotonic)
    # Admission bookkeeping, guarded by the SessionManager's lock.
    _active: int = field(default=0, init=False, repr=False)
    _generation: int = field(default=0, init=False, repr=False)
    _recheck_at: float = field(default=0.0, init=False, repr=False)

    @property
    def binds_tasks(self) -> bool:
        """``True`` when the session's tasks are owned by the session id itself (an
        unauthenticated session): they become unreachable when the session ends. An
        authenticated session's tasks belong to its subject (or client id), which any new
        session of that identity reaches again."""
        return self.caller.owner == self.id

    def touch(self) -> None:
        """Record activity (idle sessions expire)."""
        self.last_seen = time.monotonic()


def holds_unfinished_tasks(store: TaskStore, owner: str, *, max_pages: int = 4) -> bool:
    """Whether ``owner`` has a task that is not terminal (``working`` or ``input_required``).

    Reads at most ``max_pages`` pages of :meth:`TaskStore.list` (newest first, the store's
    default page size); an owner with more tasks than that, none of them unfinished, counts as
    holding some (too many to rule out cheaply).

    :raises TaskStoreError: the store could not answer.
    """
    cursor: str | None = None
    for _ in range(max_pages):
        page = store.list(owner, cursor=cursor)
        if any(not record.task.status.is_terminal for record in page.tasks):
            return True
        cursor = page.next_cursor
        if cursor is None:
            return False
    return True


class SessionManager:
    """Live sessions, and who may be evicted to admit a new one. Thread-safe.

    **Admission.** While fewer than ``max_sessions`` sessions live, a new one is simply added.
    When the table is full, :meth:`add` evicts one idle session, never one whose end would
    strand unfinished work:

    1. *Plain* sessions go first, least recently used first: authenticated sessions (their
       tasks belong to the subject, which a new session reaches again, so evicting them loses
       nothing but the session) and unauthenticated sessions that never sent a request able to
       create a task (``initialize`` floods are made of these).
    2. Then *holders*: unauthenticated sessions that did send such a request (see
       :meth:`request`). Their tasks are owned by the session id and become unreachable with
       it, so one is evicted only after the store confirms it holds no non-terminal task
       (:func:`holds_unfinished_tasks`). An admission asks about at most ``max_probes``
       holders; a holder found busy, or that just sent a request able to create a task, is not
       asked about again for ``recheck_s`` seconds. A store failure counts as busy and ends
       the admission's checks (one slow answer per admission during an outage).

    A session with a request in progress or an open stream is never evicted. When nothing may
    be evicted, :meth:`add` returns ``False``: the transport answers "busy, retry after
    :attr:`retry_after_s` seconds". Idle expiry (``idle_timeout_s``) is separate and applies
    to every session without an open stream or a request in progress.

    :param idle_timeout_s: a session unused this long (without an open stream or a request in
        progress) expires.
    :param max_sessions: at most this many live sessions.
    :param store: where the sessions' tasks live, asked before a holder is evicted; ``None``:
        holders are never evicted.
    :param recheck_s: seconds before a busy holder is asked about again.
    :param max_probes: holders asked about per admission, at most (bounds the store reads a
        flood of ``initialize`` calls can cause).
    :param key: the session-signing key shared by the deployment's workers (see the module
        docs for the default).
    """

    def __init__(
        self,
        *,
        idle_timeout_s: float = 3600.0,
        max_sessions: int = 10_000,
        store: TaskStore | None = None,
        recheck_s: float = 5.0,
        max_probes: int = 8,
        key: bytes | str | None = None,
    ) -> None:
        self._key = _session_key(key, store)
        self._worker = secrets.token_bytes(_WORKER_BYTES)
        # Sessions that ended here, newest last (bounded): never adopted again by this worker.
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._max_ended = max(1024, min(max_sessions * 2, 100_000))
        self.idle_timeout_s = idle_timeout_s
        self.max_sessions = max_sessions
        self.store = store
        self.recheck_s = recheck_s
        self.max_probes = max_probes
        # Every live session, least recently used first (the idle sweep reads the front).
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        # Eviction candidates without a store check, least recently used first.
        self._plain: OrderedDict[str, Session] = OrderedDict()
        # Unauthenticated sessions that may hold tasks, in the order they are due a check.
        self._holders: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def new_id() -> str:
        """A fresh unsigned session id (visible ASCII only, as the transport spec requires),
        for sessions no other worker needs to accept; see :meth:`issue`."""
        return secrets.token_urlsafe(24)

    def issue(self, binding: str) -> str:
        """A fresh signed session id bound to ``binding`` (:func:`session_binding` of the
        caller that will own the session): URL-safe base64, visible ASCII only."""
        head = secrets.token_bytes(_NONCE_BYTES) + self._worker
        return base64.urlsafe_b64encode(head + self._mac(head, binding)).decode("ascii")

    def adopt(self, session_id: str, caller: Caller, protocol_version: str) -> Session | None:
        """Take over a session another worker of the deployment issued.

        :returns: the adopted session (registered as by :meth:`add`), or ``None`` when
            ``session_id`` is not a valid id of this deployment for ``caller``, was issued by
            this worker (its sessions are known here or are over) or ended here.
        :raises SessionTableFull: the table is full of sessions that may not be evicted.
        """
        raw = self._decode(session_id)
        if raw is None or raw[_NONCE_BYTES:-_MAC_BYTES] == self._worker:
            return None
        head, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(head, session_binding(caller))):
            return None
        with self._lock:
            if session_id in self._ended:
                return None
            known = self._sessions.get(session_id)
        if known is not None:  # adopted meanwhile by a concurrent request
            return known
        session = Session(id=session_id, caller=caller, protocol_version=protocol_version)
        if not self.add(session):
            raise SessionTableFull(session_id)
        return session

    def _mac(self, head: bytes, binding: str) -> bytes:
        message = head + binding.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC_BYTES]

    @staticmethod
    def _decode(session_id: str) -> bytes | None:
        if len(session_id) != _ID_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(session_id.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None
        return raw if len(raw) == _ID_BYTES else None

    @property
    def retry_after_s(self) -> int:
        """Whole seconds a refused client should wait before trying again (``Retry-After``)."""
        return max(1, math.ceil(self.recheck_s))

    def add(self, session: Session) -> bool:
        """Register a session created by a successful ``initialize``, evicting one idle
        session that may go when the table is full (see the class docs).

        Store reads (only when the table is full of holders) happen outside the lock.

        :returns: ``False`` when the table is full of sessions that may not be evicted (the
            session is not added).
        """
        with self._lock:
            self._expire_locked(time.monotonic())
            if self._admit_locked(session):
                return True
            candidates = self._due_holders_locked(time.monotonic())
        for candidate, generation in candidates:
            busy = self._probe(candidate)
            with self._lock:
                if busy is False and self._unchanged_locked(candidate, generation):
                    self._drop_locked(candidate.id)
                if self._admit_locked(session):
                    return True
            if busy is None:
                break  # the store is failing: one slow answer per admission is enough
        return False

    def get(self, session_id: str) -> Session | None:
        """The live session with this id, or ``None`` (unknown, deleted or expired)."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._idle(session, time.monotonic()):
                self._drop_locked(session_id)
                return None
            self._touch_locked(session)
            return session

    def touch(self, session: Session) -> None:
        """Record activity that is not a request (a stream's keep-alive)."""
        with self._lock:
            if self._sessions.get(session.id) is session:
                self._touch_locked(session)

    @contextmanager
    def request(self, session: Session, *, may_create_tasks: bool) -> Iterator[bool]:
        """Bracket one request of ``session``: meanwhile it is never evicted.

        :param may_create_tasks: the request may create a task owned by the caller; an
            unauthenticated session then becomes a holder (evicted only once the store shows
            it holds no unfinished task).
        :returns: (as the ``with`` target) whether the session is still live; ``False`` when
            it ended since :meth:`get` returned it (the request must not run).
        """
        live = self.begin(session, may_create_tasks=may_create_tasks)
        try:
            yield live
        finally:
            self.end(session)

    def begin(self, session: Session, *, may_create_tasks: bool) -> bool:
        """Start one request of ``session`` (what :meth:`request` does on entry, for callers
        that bracket the request themselves, without a generator per request); always pair
        it with :meth:`end`, whatever it returns.

        :returns: whether the session is still live (see :meth:`request`).
        """
        with self._lock:
            session._active += 1
            session._generation += 1
            live = self._sessions.get(session.id) is session
            if live and may_create_tasks and session.binds_tasks:
                self._plain.pop(session.id, None)
                self._holders[session.id] = session
                self._holders.move_to_end(session.id)
                session._recheck_at = time.monotonic() + self.recheck_s
        return live

    def end(self, session: Session) -> None:
        """End one request started by :meth:`begin`."""
        with self._lock:
            session._active -= 1

    def remove(self, session_id: str) -> bool:
        """End a session (``DELETE``); ``False`` when it did not exist."""
        with self._lock:
            return self._drop_locked(session_id)

    def close(self) -> None:
        """End every session (server shutdown)."""
        with self._lock:
            for session_id in list(self._sessions):
                self._drop_locked(session_id)

    def __len__(self) -> int:
        return len(self._sessions)

    # -- internals (callers hold the lock unless the name says otherwise) ------------------

    @staticmethod
    def _in_use(session: Session) -> bool:
        return session._active > 0 or session.outbox.streaming

    def _idle(self, session: Session, now: float) -> bool:
        # The clock first: it spares the outbox lock that _in_use takes (every request asks).
        return now - session.last_seen > self.idle_timeout_s and not self._in_use(session)

    def _touch_locked(self, session: Session) -> None:
        session.touch()
        self._sessions.move_to_end(session.id)
        if session.id in self._plain:
            self._plain.move_to_end(session.id)

    def _insert_locked(self, session: Session) -> None:
        self._sessions[session.id] = session
        self._plain[session.id] = session

    def _admit_locked(self, session: Session) -> bool:
        while len(self._sessions) >= self.max_sessions:
            victim = next((s for s in self._plain.values() if not self._in_use(s)), None)
            if victim is None:
                return False
            self._drop_locked(victim.id)
        self._insert_locked(session)
        return True

    def _due_holders_locked(self, now: float) -> list[tuple[Session, int]]:
        """Holders due a store check (at most ``max_probes``), each rescheduled at once so
        concurrent admissions ask about different ones."""
        due: list[tuple[Session, int]] = []
        for _ in range(len(self._holders)):
            if len(due) >= self.max_probes:
                break
            holder = next(iter(self._holders.values()))
            if holder._recheck_at > now:
                break  # the queue is in due order: the rest are not due either
            holder._recheck_at = now + self.recheck_s
            self._holders.move_to_end(holder.id)
            if not self._in_use(holder):
                due.append((holder, holder._generation))
        return due

    def _unchanged_locked(self, session: Session, generation: int) -> bool:
        # A request that began since the check may have created a task the check missed.
        return (
            self._sessions.get(session.id) is session
            and session._generation == generation
            and not self._in_use(session)
        )

    def _probe(self, session: Session) -> bool | None:
        """Whether ``session`` holds unfinished tasks; ``None`` when that cannot be known (no
        store, or the store failed), which keeps it too. Called without the lock."""
        if self.store is None:
            return None
        try:
            return holds_unfinished_tasks(self.store, session.caller.owner)
        except Exception as exc:  # noqa: BLE001 - cannot rule it out: keep the session
            _log.warning("could not check a session's tasks before evicting it: %s", exc)
            return None

    def _expire_locked(self, now: float) -> None:
        # Amortised O(1): the front is the least recently used; sessions in use move back.
        for _ in range(len(self._sessions)):
            session = next(iter(self._sessions.values()))
            if self._in_use(session):
                self._sessions.move_to_end(session.id)
            elif now - session.last_seen > self.idle_timeout_s:
                self._drop_locked(session.id)
            else:
                break

    def _drop_locked(self, session_id: str) -> bool:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        self._ended[session_id] = None
        if len(self._ended) > self._max_ended:
            self._ended.popitem(last=False)
        self._plain.pop(session_id, None)
        self._holders.pop(session_id, None)
        session.outbox.end()
        return True
