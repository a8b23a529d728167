"""Reading and writing a connection's socket for the bundled server: reads bounded by a
deadline, writes bounded by a timeout, and the header section bounded in size.

These sit below HTTP: they know bytes and time, not requests. :class:`_Handler` (in
:mod:`taskstore.http._handler`) wraps its socket in them once per connection.
"""

from __future__ import annotations

import http.client
import io
import socket
import time
from typing import Any

__all__ = ["_DeadlineReader", "_HeaderBudget", "_TimedWriter"]


class _DeadlineReader(io.RawIOBase):
    """Reads a socket until a deadline: each receive may wait only for the time left, so a
    client that trickles bytes cannot hold the connection longer than a stalled one."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _TimedWriter(io.BufferedIOBase):
    """Writes to a socket, each write allowed ``timeout`` seconds to go through."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._timeout = timeout

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.settimeout(self._timeout)
        self._sock.sendall(data)
        return memoryview(data).nbytes


class _HeaderSectionTooLarge(http.client.LineTooLong):
    """The header section is over the handler's budget (answered 431, like a long line)."""

    def __init__(self, budget: int) -> None:
        http.client.HTTPException.__init__(self, f"the header section exceeds {budget} bytes")


class _HeaderBudget(io.BufferedIOBase):
    """The request's reader while its headers are parsed: past ``budget`` bytes, the header
    section is too large (``http.client`` caps only each line and the number of lines)."""

    def __init__(self, rfile: io.BufferedIOBase, budget: int) -> None:
        self._rfile = rfile
        self._budget = budget
        self._left = budget

    def readline(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._left + 1  # http.client always bounds its lines; stay bounded anyway
        line = self._rfile.readline(size)
        self._left -= len(line)
        # A line filling ``size`` is too long by itself: http.client says so, more precisely.
        if self._left < 0 and len(line) < size:
            raise _HeaderSectionTooLarge(self._budget)
        return line
