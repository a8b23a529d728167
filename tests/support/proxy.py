"""A TCP proxy the tests control: outages, stalls and lost replies on demand, in front of a
real server.

:class:`Proxy` listens on a free loopback port and forwards every connection to the server
behind it, one thread per direction. A test points a client at :attr:`Proxy.port` and drives
faults explicitly instead of killing or pausing the server:

- :meth:`Proxy.outage` drops every connection and turns new ones away: refused (nothing
  listens, as with a stopped server) or, with ``refuse=False``, accepted and reset at once
  (counted in :attr:`Proxy.rejected`, so a test can wait until clients have hit the outage);
- :meth:`Proxy.stall` stops forwarding in both directions and holds new connections, as a
  frozen server or a partitioned network would; what was held flows on :meth:`Proxy.resume`;
- :meth:`Proxy.drop_next_reply` lets the next request (the next one holding given bytes, say
  ``b"EVALSHA"``) through and swallows its reply, then drops that connection: the server
  applied the request, the client never hears of it;
- :meth:`Proxy.resume` forwards again (listening again after a refusing outage).

Deterministic by construction: every fault starts and ends when the test says so, and the
counters and :meth:`Proxy.wait_until` let a test wait for what the clients did instead of
sleeping for it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable

__all__ = ["Proxy", "ProxyGroup"]

_CHUNK = 65_536
_POLL_S = 0.05


def _reset(sock: socket.socket) -> None:
    """End ``sock`` at once with a TCP reset (SO_LINGER 0), as a dying server's kernel would.

    shutdown() first: a close() alone would wait for a pump thread blocked in recv() on the
    socket, and until then the connection would quietly accept (and lose) what the client
    writes.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Arm:
    """What :meth:`Proxy.drop_next_reply` armed: the bytes the next dropped request holds
    (shared by the proxies of a :class:`ProxyGroup`, so one drop happens in all of them)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.containing: bytes | None = None

    def set(self, containing: bytes | None) -> None:
        with self.lock:
            self.containing = containing

    def take(self, data: bytes) -> bool:
        """Whether ``data`` is the request to drop the reply of (disarming, if so)."""
        with self.lock:
            if self.containing is None or self.containing not in data:
                return False
            self.containing = None
            return True


class _Pair:
    """One proxied connection: the client's socket and the server's, and its two pumps."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.server: socket.socket | None = None
        self.drop_reply = False
        # Held by a stall (the connection, or data in one direction): settle() waits for it.
        self.stalled = False
        self.pumps = 0
        self.done = threading.Event()

    def close(self) -> None:
        _reset(self.client)
        if self.server is not None:
            _reset(self.server)


class Proxy:
    """A threaded TCP forwarder from a free loopback port to ``target_host:target_port``.

    Use as a context manager, or call :meth:`close`.

    :ivar accepted: connections accepted and forwarded (or held) so far.
    :ivar forwarded: chunks of client data passed to the server so far (requests, roughly).
    :ivar rejected: connections reset at once by an outage with ``refuse=False``.
    :ivar dropped: replies swallowed by :meth:`drop_next_reply`.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._lock = threading.Condition()
        self._pairs: set[_Pair] = set()
        self._held: list[_Pair] = []
        self._mode = "forward"  # forward | refuse | reset | stall
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._arm = _Arm()
        self._closed = False
        self.accepted = 0
        self.forwarded = 0
        self.rejected = 0
        self.dropped = 0
        self._listener: socket.socket | None = None
        self.port = 0
        self._listen()
        self._thread = threading.Thread(target=self._accept_loop, name="test-proxy", daemon=True)
        self._thread.start()

    # -- control ---------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect: ``("127.0.0.1", port)``."""
        return ("127.0.0.1", self.port)

    def outage(self, *, refuse: bool = True) -> None:
        """Drop every open connection (reset) and turn new ones away until :meth:`resume`:
        refused when ``refuse`` (the port closes), else accepted and reset at once."""
        with self._lock:
            self._mode = "refuse" if refuse else "reset"
            self._arm.set(None)
            pairs = list(self._pairs) + self._held
            self._held.clear()
            if refuse and self._listener is not None:
                # shutdown() first: close() alone would leave the socket listening until the
                # accept() blocked on it in the accept thread returns.
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            self._forwarding.set()  # stalled pumps must see their sockets die, not wait
            self._lock.notify_all()
        for pair in pairs:
            pair.close()

    def stall(self) -> None:
        """Stop forwarding, in both directions, and hold new connections unanswered, until
        :meth:`resume` (which forwards what was held)."""
        with self._lock:
            self._mode = "stall"
            self._forwarding.clear()
            self._lock.notify_all()

    def drop_next_reply(self, containing: bytes = b"") -> None:
        """Let the next request through and swallow its reply: the first connection to send
        data (holding ``containing``) after this call has its next reply dropped and is then
        reset."""
        self._arm.set(containing)

    def resume(self) -> None:
        """Forward again: listen again after a refusing outage, connect held connections."""
        with self._lock:
            if self._mode == "refuse":
                self._listen()
            self._mode = "forward"
            held, self._held = self._held, []
            self._forwarding.set()
            self._lock.notify_all()
        for pair in held:
            self._connect(pair)

    def reset_counts(self) -> None:
        """Start every counter from 0 again (a proxy shared by several tests)."""
        with self._lock:
            self.accepted = self.forwarded = self.rejected = self.dropped = 0

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
        """Poll ``predicate`` until it holds; AssertionError after ``timeout_s`` (a guard
        against a hung test, never what decides an outcome)."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"proxy: condition not reached in {timeout_s} s")
            time.sleep(0.005)

    def settle(self, timeout_s: float = 30.0) -> None:
        """After :meth:`resume`, wait until every connection a stall held up is torn down:
        what it carried has reached the server, and the server, seeing its client gone, has
        answered and closed (so it has processed it). The clients of those connections must
        have given up on them (timed out), or this waits for ever (``timeout_s``)."""

        def settled() -> bool:
            with self._lock:
                return not any(p.stalled for p in self._pairs)

        self.wait_until(settled, timeout_s)

    def close(self) -> None:
        """Stop listening and drop every connection."""
        with self._lock:
            self._closed = True
            listener, self._listener = self._listener, None
            pairs = list(self._pairs) + self._held
            self._forwarding.set()
            self._lock.notify_all()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for pair in pairs:
            pair.close()
        self._thread.join(5)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- machinery ---------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(_POLL_S)
        self.port = listener.getsockname()[1]
        self._listener = listener

    def _accept_loop(self) -> None:
        while True:
            with self._lock:
                while not self._closed and self._listener is None:
                    self._lock.wait()
                if self._closed:
                    return
                listener = self._listener
            assert listener is not None
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                continue  # closed by an outage meanwhile
            client.settimeout(None)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                mode = self._mode
                if mode in ("reset", "refuse"):
                    self.rejected += 1
                    _reset(client)
                    continue
                self.accepted += 1
                pair = _Pair(client)
                self._pairs.add(pair)
                if mode == "stall":
                    pair.stalled = True
                    self._held.append(pair)
                    continue
            self._connect(pair)

    def _connect(self, pair: _Pair) -> None:
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            pair.close()
            self._finish(pair)
            return
        server.settimeout(None)
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair.server = server
        pair.pumps = 2
        for upstream in (True, False):
            threading.Thread(
                target=self._pump, args=(pair, upstream), name="test-proxy-pump", daemon=True
            ).start()

    def _pump(self, pair: _Pair, upstream: bool) -> None:
        assert pair.server is not None
        source, sink = (pair.client, pair.server) if upstream else (pair.server, pair.client)
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                # A stall holds the data here until resume (or an outage kills the sockets).
                if not self._forwarding.is_set():
                    pair.stalled = True
                self._forwarding.wait()
                with self._lock:
                    if upstream and self._arm.take(data):
                        pair.drop_reply = True
                    drop = not upstream and pair.drop_reply
                    if drop:
                        self.dropped += 1
                    elif upstream:
                        self.forwarded += 1
                if drop:
                    pair.close()  # the server answered; the client never hears of it
                    break
                sink.sendall(data)
        except OSError:
            pass  # reset by the other side, or by an outage
        finally:
            # Pass the end on: the server sees the client leave (and finishes what it got).
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
            with self._lock:
                pair.pumps -= 1
                last = pair.pumps == 0
            if last:
                for sock in (pair.client, pair.server):
                    with contextlib.suppress(OSError):
                        sock.close()
                self._finish(pair)

    def _finish(self, pair: _Pair) -> None:
        with self._lock:
            pair.done.set()
            self._pairs.discard(pair)
            self._lock.notify_all()


class ProxyGroup:
    """Several proxies driven as one (each node of a cluster behind its own): every fault
    hits all of them, a reply drop happens once among them, counters are their sums.

    :param target_ports: the servers' ports, one proxy each (in :attr:`proxies`, in order).
    """

    def __init__(self, target_ports: list[int]) -> None:
        self.proxies = [Proxy(port) for port in target_ports]
        shared = _Arm()
        for proxy in self.proxies:
            proxy._arm = shared

    @property
    def accepted(self) -> int:
        """Connections accepted, by all the proxies."""
        return sum(p.accepted for p in self.proxies)

    @property
    def forwarded(self) -> int:
        """Chunks of client data forwarded, by all the proxies."""
        return sum(p.forwarded for p in self.proxies)

    @property
    def rejected(self) -> int:
        """Connections reset by an outage, by all the proxies."""
        return sum(p.rejected for p in self.proxies)

    @property
    def dropped(self) -> int:
        """Replies dropped, by all the proxies."""
        return sum(p.dropped for p in self.proxies)

    def outage(self, *, refuse: bool = True) -> None:
        """:meth:`Proxy.outage` on every proxy."""
        for proxy in self.proxies:
            proxy.outage(refuse=refuse)

    def stall(self) -> None:
        """:meth:`Proxy.stall` on every proxy."""
        for proxy in self.proxies:
            proxy.stall()

    def resume(self) -> None:
        """:meth:`Proxy.resume` on every proxy."""
        for proxy in self.proxies:
            proxy.resume()

    def drop_next_reply(self, containing: bytes = b"") -> None:
        """Drop the reply of the next request holding ``containing``, whichever proxy
        carries it."""
        self.proxies[0]._arm.set(containing)

    def reset_counts(self) -> None:
        """:meth:`Proxy.reset_counts` on every proxy."""
        for proxy in self.proxies:
            proxy.reset_counts()

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
        """:meth:`Proxy.wait_until`."""
        self.proxies[0].wait_until(predicate, timeout_s)

    def settle(self, timeout_s: float = 30.0) -> None:
        """:meth:`Proxy.settle` on every proxy."""
        for proxy in self.proxies:
            proxy.settle(timeout_s)

    def close(self) -> None:
        """Close every proxy."""
        for proxy in self.proxies:
            proxy.close()

    def __enter__(self) -> ProxyGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
