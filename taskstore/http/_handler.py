"""One connection of the bundled server, request after request (:class:`_Handler`).

Each request's head is read within the read timeout and bounded in size, its body framed
(:mod:`taskstore.http._bodies`) and its answer run through the application
(:mod:`taskstore.http._exchange`); between requests the connection waits idle, as the server
(:mod:`taskstore.http._server`) allows. Refusals are answered in JSON-RPC and end the
connection after a lingering close.
"""

from __future__ import annotations

import http.client
import io
import logging
import re
import socket
import sys
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler

from taskstore.errors import INVALID_REQUEST
from taskstore.http._bodies import _Body, _ChunkedBody, _LengthBody
from taskstore.http._exchange import _ClientGone, _error_body, _Exchange, _http_date
from taskstore.http._head import read_headers
from taskstore.http._wire import _DeadlineReader, _HeaderBudget, _TimedWriter
from taskstore.http.responses import JSON, REASONS

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

    from taskstore.http._server import ThreadingWSGIServer

__all__ = ["_Handler"]

_log = logging.getLogger("taskstore.wsgi")

#: How long, and how much, a closing connection still reads so that its last answer is not
#: destroyed by a reset (closing a socket with unread input resets the connection).
_LINGER_S = 1.0
_LINGER_BYTES = 1024 * 1024
_DIGITS = re.compile(r"[0-9]+")


class _Handler(WSGIRequestHandler):
    """One connection, request after request: each head read within the read timeout and
    bounded in size, errors answered in JSON-RPC, request lines logged to ``taskstore.wsgi``
    (debug)."""

    protocol_version = "HTTP/1.1"
    #: Longest request line, line ending included (bytes); longer gets 414.
    max_request_line = 8192
    #: Largest header section (bytes); larger gets 431.
    max_header_bytes = 65536
    #: Largest unread rest of a request body the server reads and discards to keep the
    #: connection (bytes); a larger one closes it.
    max_drain_bytes = 65536

    server: ThreadingWSGIServer

    def setup(self) -> None:
        timeout = self.server.read_timeout_s
        self.connection = self.request
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):
            try:  # answers are written whole; a stream's chunks must not wait for ACKs
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._reader = _DeadlineReader(self.connection, time.monotonic() + timeout)
        self._buffered = io.BufferedReader(self._reader, 65536)
        self.rfile = self._buffered
        self.wfile = _TimedWriter(self.connection, timeout)
        self._linger = False

    def handle(self) -> None:
        """Serve requests until one ends the connection or the next does not come."""
        while self._handle_one() and self._await_next_request():
            pass

    def finish(self) -> None:
        """Close the connection (after a lingering read when input was left unread)."""
        if self._linger:
            self._lingering_close()
        super().finish()

    def _await_next_request(self) -> bool:
        """Wait, idle, for the next request's first byte (already there when pipelined);
        ``False``: the connection ends (idle timeout, the client closed, or the server needed
        the slot or is shutting down)."""
        self._reader.deadline = time.monotonic() + self.server.keepalive_timeout_s
        if not self.server.idle_begin(self.connection):
            return False
        try:
            arrived = self._buffered.peek(1)
        except OSError as exc:  # the idle timeout (TimeoutError) included
            _log.debug("idle connection from %s ends: %s", self.client_address[0], exc)
            arrived = b""
        finally:
            serve = self.server.idle_end(self.connection)
        if not (arrived and serve):
            return False
        self._reader.deadline = time.monotonic() + self.server.read_timeout_s
        return True

    def _handle_one(self) -> bool:
        """Read one request and answer it; whether the connection may carry another."""
        # Until parse_request fills them in, error answers and log lines need these.
        self.requestline, self.request_version, self.command = "", "HTTP/0.9", ""
        self.close_connection = True
        try:
            if not self._read_head():
                return False
            body = self._body()
        except TimeoutError:
            _log.debug("request from %s timed out before its body", self.client_address[0])
            self._answer_timeout()
            return False
        except OSError as exc:
            _log.debug("request from %s failed: %s", self.client_address[0], exc)
            return False
        if body is None:
            return False
        return self._run_app(body)

    def _read_head(self) -> bool:
        """Read and parse the request line and headers; ``False`` when answered already (or
        the client closed)."""
        line = self.rfile.readline(self.max_request_line + 1)
        if line in (b"\r\n", b"\n"):  # RFC 9112 §2.2: ignore an empty line before a request
            line = self.rfile.readline(self.max_request_line + 1)
        self.raw_requestline = line
        if len(line) > self.max_request_line:
            self.send_error(414, f"the request line exceeds {self.max_request_line} bytes")
            return False
        if not line:
            return False  # closed without a word
        if not self.parse_request():
            if not self.requestline:  # a blank line: http.server answers nothing
                self.send_error(400, "Bad request syntax ('')")
            return False
        tokens = {
            token.strip().lower()
            for value in self.headers.get_all("Connection", ())
            for token in value.split(",")
        }
        if "close" in tokens or self.request_version == "HTTP/0.9":
            self.close_connection = True
        else:
            self.close_connection = self.request_version < "HTTP/1.1" and "keep-alive" not in tokens
        return True

    def parse_request(self) -> bool:
        """``BaseHTTPRequestHandler.parse_request`` (Python 3.11's, step for step and with its
        answers) with the header section's size capped and plain headers parsed without the
        ``email`` package (:func:`~taskstore.http._head.read_headers`)."""
        self.command = None  # type: ignore[assignment]  # set in case of error on the first line
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if not words:
            return False
        if len(words) >= 3:  # enough to tell the protocol version
            version = words[-1]
            try:
                if not version.startswith("HTTP/"):
                    raise ValueError
                numbers = version.split("/", 1)[1].split(".")
                # RFC 2145 §3.1: one dot; major and minor are separate integers.
                if len(numbers) != 2 or not all(n.isdigit() and len(n) <= 10 for n in numbers):
                    raise ValueError
                version_number = int(numbers[0]), int(numbers[1])
            except (ValueError, IndexError):
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if version_number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
                self.close_connection = False
            if version_number >= (2, 0):
                self.send_error(
                    HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                    f"Invalid HTTP version ({version.split('/', 1)[1]})",
                )
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        # gh-87389: a path starting with // reads as a URI without scheme to clients.
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")
        try:
            self.headers = read_headers(  # type: ignore[assignment]
                _HeaderBudget(self.rfile, self.max_header_bytes)
            )
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err)
            )
            return False
        conntype = (self.headers.get("Connection", "") or "").lower()
        if conntype == "close":
            self.close_connection = True
        elif conntype == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        expect = self.headers.get("Expect", "") or ""
        if (
            expect.lower() == "100-continue"
            and self.protocol_version >= "HTTP/1.1"
            and self.request_version >= "HTTP/1.1"
        ):
            return self.handle_expect_100()
        return True

    def _body(self) -> _Body | None:
        """The request body's reader; ``None`` when its framing was refused."""
        encodings = self.headers.get_all("Transfer-Encoding", ())
        lengths = self.headers.get_all("Content-Length", ())
        if encodings:
            if lengths:
                self.send_error(400, "Transfer-Encoding with Content-Length")
                return None
            if [e.strip().lower() for e in encodings] != ["chunked"]:
                self.send_error(501, "Transfer-Encoding other than chunked")
                return None
            return _ChunkedBody(self._buffered)
        values = {value.strip() for value in lengths}
        if len(values) > 1 or not all(_DIGITS.fullmatch(value) for value in values):
            self.send_error(400, "invalid Content-Length")
            return None
        return _LengthBody(self._buffered, int(values.pop()) if values else 0)

    def _environ(self, body: _Body) -> WSGIEnvironment:
        env = self.get_environ()
        env["wsgi.input"] = body
        env["wsgi.errors"] = sys.stderr
        env["wsgi.version"] = (1, 0)
        env["wsgi.url_scheme"] = "http"
        env["wsgi.multithread"] = True
        env["wsgi.multiprocess"] = False
        env["wsgi.run_once"] = False
        if isinstance(body, _ChunkedBody):
            env["wsgi.input_terminated"] = True
        return env

    def _run_app(self, body: _Body) -> bool:
        """Run the application on the request and send its answer; whether the connection
        may carry another request."""
        exchange = _Exchange(self, body, self.close_connection)
        app: WSGIApplication = self.server.get_app()  # type: ignore[assignment]
        result: Iterable[bytes] | None = None
        try:
            result = app(self._environ(body), exchange.start_response)
            if isinstance(result, (list, tuple)) and len(result) == 1:
                exchange.write(result[0], last=True)  # one chunk: its length is known
            else:
                for data in result:
                    exchange.write(data)
            exchange.finish()
        except _ClientGone as exc:
            _log.debug("response to %s cut short: %s", self.client_address[0], exc)
            return False
        except Exception:  # noqa: BLE001 - logged; a JSON-RPC 500 or a cut answer
            _log.error("error answering a request", exc_info=True)
            try:
                exchange.fail()
            except _ClientGone:
                return False
        finally:
            if result is not None:
                self._close_result(result, exchange)
        self.log_request(exchange.code, exchange.sent)
        keep = (
            exchange.complete
            and not exchange.close
            and body.drain(self.max_drain_bytes)
            and not self.server.closing
        )
        # Unread input would reset the connection at its close (not worth waiting for when
        # the client stalled).
        self._linger = not (keep or body.complete or body.stalled)
        return keep

    def _close_result(self, result: Iterable[bytes], exchange: _Exchange) -> None:
        close = getattr(result, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception:  # noqa: BLE001 - logged; the connection ends
            _log.error("error closing a response", exc_info=True)
            exchange.close = True

    def _answer_timeout(self) -> None:
        try:
            self.send_error(408, "the request did not arrive in time")
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a request the server refuses before the app sees it (400, 408, 414, 431,
        501, 505) with a JSON-RPC error instead of ``http.server``'s HTML page, and end the
        connection."""
        reason = REASONS.get(code) or self.responses.get(code, ("Error",))[0]
        detail = explain or message  # http.server's explanations are the precise ones
        text = reason if not detail or detail == reason else f"{reason}: {detail}"
        body = _error_body(INVALID_REQUEST, text)
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        self._linger = code != 408  # a stalled client sends nothing more worth waiting for
        head = (
            f"HTTP/1.1 {code} {reason}\r\nDate: {_http_date()}\r\nConnection: close\r\n"
            f"Content-Type: {JSON}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.wfile.write(head.encode("latin-1") + (b"" if self.command == "HEAD" else body))

    def _lingering_close(self) -> None:
        """Tell the client nothing more comes, then read (briefly, boundedly) what it still
        sends: closing with unread input resets the connection, which can destroy the last
        answer before the client reads it."""
        deadline = time.monotonic() + _LINGER_S
        budget = _LINGER_BYTES
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while budget > 0 and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                data = self.connection.recv(65536)
                if not data:
                    return
                budget -= len(data)
        except OSError:
            pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One debug line per answer on ``taskstore.wsgi``."""
        if _log.isEnabledFor(logging.DEBUG):
            super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Request lines and refusals go to the ``taskstore.wsgi`` logger (debug)."""
        _log.debug("%s - " + format, self.address_string(), *args)
