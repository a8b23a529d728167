"""Request bodies for the bundled server: ``wsgi.input`` framed exactly, so that reading it
never runs into the next request on the connection.

A ``Content-Length`` body (:class:`_LengthBody`) ends at its length; a ``Transfer-Encoding:
chunked`` one (:class:`_ChunkedBody`) at its last chunk, de-chunked. Either records whether a
read failed or stalled and can drain its unread rest, which is what decides whether the
connection can carry another request (:mod:`taskstore.http._handler`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["_Body", "_ChunkedBody", "_LengthBody"]

_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class _MalformedBody(OSError):
    """The request body is not framed as its headers say (applications treat it as a body
    that could not be read)."""


class _Body:
    """``wsgi.input``: the request body, and nothing past it (PEP 3333's ``read``,
    ``readline``, ``readlines`` and iteration)."""

    def __init__(self, rfile: io.BufferedReader[Any]) -> None:
        self._rfile = rfile
        #: A read failed (timeout, disconnect, bad framing): the connection cannot be reused.
        self.failed = False
        #: The read that failed timed out: the client stalled.
        self.stalled = False

    @property
    def complete(self) -> bool:
        """Whether the whole body has been read."""
        raise NotImplementedError

    def _failed(self, exc: BaseException) -> None:
        self.failed = True
        self.stalled = self.stalled or isinstance(exc, TimeoutError)

    def _take(self, size: int) -> bytes:
        """Up to ``size`` bytes of the body (``-1``: all of it); empty at its end."""
        raise NotImplementedError

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when ``size`` is negative or ``None``)."""
        try:
            return self._take(-1 if size is None or size < 0 else size)
        except BaseException as exc:
            self._failed(exc)
            raise

    def readline(self, size: int | None = -1) -> bytes:
        """One line of the body (at most ``size`` bytes)."""
        line = bytearray()
        limit = -1 if size is None or size < 0 else size
        while limit < 0 or len(line) < limit:
            byte = self.read(1)
            if not byte:
                break
            line += byte
            if byte == b"\n":
                break
        return bytes(line)

    def readlines(self, hint: int = -1) -> list[bytes]:
        """The body's lines (until about ``hint`` bytes, when positive)."""
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def drain(self, budget: int) -> bool:
        """Read and discard the rest of the body, if it is at most ``budget`` bytes; whether
        the connection may carry another request."""
        if self.failed:
            return False
        try:
            while not self.complete:
                chunk = self.read(min(budget + 1, 65536))
                budget -= len(chunk)
                if budget < 0 or not (chunk or self.complete):
                    return False
        except OSError:
            return False
        return not self.failed


class _LengthBody(_Body):
    """A body of ``Content-Length`` bytes."""

    def __init__(self, rfile: io.BufferedReader[Any], length: int) -> None:
        super().__init__(rfile)
        self.remaining = length

    @property
    def complete(self) -> bool:
        return self.remaining == 0 and not self.failed

    def _take(self, size: int) -> bytes:
        size = self.remaining if size < 0 else min(size, self.remaining)
        if size == 0:
            return b""
        data = self._rfile.read(size)
        self.remaining -= len(data)
        if len(data) < size:
            raise _MalformedBody("the client closed the connection mid-body")
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = self.remaining if size is None or size < 0 else min(size, self.remaining)
        try:
            line = self._rfile.readline(limit) if limit else b""
        except BaseException as exc:
            self._failed(exc)
            raise
        self.remaining -= len(line)
        return line


class _ChunkedBody(_Body):
    """A ``Transfer-Encoding: chunked`` body, de-chunked (trailers are read and dropped)."""

    #: Longest chunk-size or trailer line; at most this many trailer lines.
    max_line = 4096
    max_trailers = 100

    def __init__(self, rfile: io.BufferedReader[Any]) -> None:
        super().__init__(rfile)
        self._left = 0  # bytes left in the current chunk
        self._ended = False

    @property
    def complete(self) -> bool:
        return self._ended and not self.failed

    def _take(self, size: int) -> bytes:
        out = bytearray()
        while not self._ended and (size < 0 or len(out) < size):
            if self._left == 0:
                self._left = self._chunk_size()
                if self._left == 0:
                    self._end()
                    break
            want = self._left if size < 0 else min(self._left, size - len(out))
            data = self._rfile.read(want)
            if len(data) < want:
                raise _MalformedBody("the client closed the connection mid-body")
            out += data
            self._left -= want
            if self._left == 0 and self._line() not in (b"\r\n", b"\n"):
                raise _MalformedBody("a chunk does not end with CRLF")
        return bytes(out)

    def _line(self) -> bytes:
        line = self._rfile.readline(self.max_line + 1)
        if len(line) > self.max_line or not line.endswith(b"\n"):
            raise _MalformedBody("a chunk-size or trailer line is too long or cut short")
        return line

    def _chunk_size(self) -> int:
        size = self._line().split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size):
            raise _MalformedBody("a chunk size is not a hexadecimal number")
        return int(size, 16)

    def _end(self) -> None:
        for _ in range(self.max_trailers):
            if self._line() in (b"\r\n", b"\n"):
                self._ended = True
                return
        raise _MalformedBody("too many trailer lines")
