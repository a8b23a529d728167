"""Transport sessions (``Mcp-Session-Id``) and their outbound message boxes.

A session starts with a successful ``initialize`` and is bound to the identity that created it:
later requests must resolve to the same owner, or the session does not exist for them. Each
session has an :class:`Outbox`, the :class:`~taskstore.mcp.notifications.NotificationSender` of
its server → client messages (task status, progress), delivered while the client holds the
session's GET stream open and dropped otherwise (the spec makes them optional; clients poll).
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from dataclasses import dataclass, field

from taskstore.mcp.auth import Caller
from taskstore.mcp.jsonrpc import JsonDict

__all__ = ["CLOSE", "Outbox", "Session", "SessionManager"]

#: Put on an outbox queue to end the stream reading it.
CLOSE: JsonDict = {}


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

    def touch(self) -> None:
        """Record activity (idle sessions expire)."""
        self.last_seen = time.monotonic()


class SessionManager:
    """Live sessions. Thread-safe.

    :param idle_timeout_s: a session unused this long (and without an open stream) expires.
    :param max_sessions: at most this many live sessions; the longest idle one is evicted to
        make room for a new one.
    """

    def __init__(self, *, idle_timeout_s: float = 3600.0, max_sessions: int = 10_000) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    @staticmethod
    def new_id() -> str:
        """A fresh session id: visible ASCII only, as the transport spec requires."""
        return secrets.token_urlsafe(24)

    def add(self, session: Session) -> None:
        """Register a session created by a successful ``initialize``."""
        with self._lock:
            self._expire_locked()
            while len(self._sessions) >= self.max_sessions:
                oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
                self._drop_locked(oldest.id)
            self._sessions[session.id] = session

    def get(self, session_id: str) -> Session | None:
        """The live session with this id, or ``None`` (unknown, deleted or expired)."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._idle(session, time.monotonic()):
                self._drop_locked(session_id)
                return None
            session.touch()
            return session

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

    def _idle(self, session: Session, now: float) -> bool:
        return not session.outbox.streaming and now - session.last_seen > self.idle_timeout_s

    def _expire_locked(self) -> None:
        now = time.monotonic()
        # A full sweep costs O(sessions): at most once a minute, or when the table is full.
        if now < self._next_sweep and len(self._sessions) < self.max_sessions:
            return
        self._next_sweep = now + 60.0
        for session in [s for s in self._sessions.values() if self._idle(s, now)]:
            self._drop_locked(session.id)

    def _drop_locked(self, session_id: str) -> bool:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        session.outbox.end()
        return True
