"""Helpers of the tasks-extension end-to-end tests (tests/e2e/test_modern_tasks.py,
tests/e2e/test_modern_cross_process.py): a server process that prints its URL and then JSON
event lines (tests/e2e/tasks_store_server.py reports its tools' returns that way), and raw
modern HTTP requests that declare the tasks extension."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from support.modern import TASKS_EXTENSION, headers, message, meta

__all__ = ["TASKS_CAPS", "TIMESTAMP", "ServerProcess", "rpc"]

#: The one line a server prints first: where it listens.
_URL_LINE = re.compile(r"http://127\.0\.0\.1:\d+/mcp")
#: The ISO-8601 form of a task's ``createdAt`` and ``lastUpdatedAt``.
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
#: The capabilities of a raw modern request: elicitation and the tasks extension.
TASKS_CAPS: dict[str, Any] = {"elicitation": {}, "extensions": {TASKS_EXTENSION: {}}}


class ServerProcess:
    """A server process run with this environment's interpreter: it prints its URL, then JSON
    event lines; threads collect those and its stderr (so no pipe ever fills or is read twice).
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.events: list[dict[str, Any]] = []
        self._stderr: list[str] = []
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._drain_stderr, daemon=True)]
        self._threads[0].start()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        self._threads.append(threading.Thread(target=self._read_events, daemon=True))
        self._threads[1].start()
        if not _URL_LINE.fullmatch(line):
            self.stop()
            pytest.fail(f"{argv} printed {line!r}, not its URL:\n{self.stderr[-4000:]}")
        self.url = line

    @property
    def stderr(self) -> str:
        """What the process wrote on stderr so far."""
        return "".join(self._stderr)

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def _read_events(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"unparsed": line}
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()

    def event(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first event matching ``predicate``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for seen in self.events:
                    if predicate(seen):
                        return seen
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no matching event within {timeout} s: {self.events}"
                self._changed.wait(remaining)

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 15 s), then collect the rest of its output."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)
        for thread in self._threads:
            thread.join(15)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def rpc(
    url: str,
    method: str,
    extra: dict[str, Any],
    token: str | None = None,
    id: int = 1,  # noqa: A002
) -> tuple[int, dict[str, Any]]:
    """POST one modern request declaring the tasks extension, with the routing headers
    (``Mcp-Name`` = ``taskId``, else ``name``) and, given a ``token``, a bearer
    ``Authorization``; return the HTTP status and the JSON-RPC reply (error replies too)."""
    body = message(method, {**extra, "_meta": meta(TASKS_CAPS)}, id)
    sent = headers(method, extra.get("taskId", extra.get("name")))
    sent.update({"Content-Type": "application/json", "Accept": "application/json"})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), sent)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as failed:
        with failed:
            return failed.code, json.loads(failed.read())
