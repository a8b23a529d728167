"""examples/wsgi_app.py served by real gunicorn (issue "Operating taskstore in production",
item 4): two threaded workers on one SQLite store, driven by the official MCP client
(2025-11-25 sessions) and FastMCP's tasks-extension client (2026-07-28). A task created
through one worker is completed and fetched through whichever worker answers, and the
application's own routes answer beside the MCP endpoint.

Which worker served what comes from gunicorn's access log (its pid, path, status, the
request's ``Mcp-Session-Id`` and ``Mcp-Method`` headers). Every request gets a connection of
its own (``--keep-alive 0``) and each worker listens on a socket of its own
(``--reuse-port``), so the kernel spreads a client's requests over both workers at random. A
scenario whose requests all happened to land on one worker (a few per cent of runs) proves
nothing about the other, so it is run again, a bounded number of times, until they did not.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from support.examples import EXAMPLES
from support.modern import headers, message, params
from support.servers import free_port, need_modules, unavailable

pytestmark = pytest.mark.sqlite

HERE = Path(__file__).parent
MODERN_SCENARIOS = HERE / "modern_tasks_scenarios.py"
MODERN_VENV = Path.home() / ".cache" / "taskstore" / "modern-client-venv"
WORKERS = 2
#: gunicorn's access log: pid, method, path, status, Mcp-Session-Id, Mcp-Method ("-": none).
ACCESS_FORMAT = "%(p)s %(m)s %(U)s %(s)s %({mcp-session-id}i)s %({mcp-method}i)s"
ACCESS_LINE = re.compile(r"<(\d+)> (\S+) (\S+) (\d{3}) (\S+) (\S+)")
GRACEFUL_TIMEOUT_S = 20
#: Runs of a scenario until its requests reached both workers (each run lands them all on one
#: worker with probability 2 ** (1 - requests): about 1/16 for the shortest one below).
ATTEMPTS = 6
DEADLINE_S = 30.0

T = TypeVar("T")


@dataclass(frozen=True)
class Hit:
    """One request as gunicorn's access log shows it."""

    pid: int
    method: str
    path: str
    status: int
    session: str | None
    mcp_method: str | None


def _hit(line: str) -> Hit | None:
    match = ACCESS_LINE.fullmatch(line.strip())
    if match is None:
        return None
    pid, method, path, status, session, mcp_method = match.groups()
    return Hit(
        int(pid),
        method,
        path,
        int(status),
        None if session == "-" else session,
        None if mcp_method == "-" else mcp_method,
    )


class Gunicorn:
    """``gunicorn wsgi_app:app`` with two gthread workers; threads collect its access log
    (stdout) and its error log (stderr)."""

    def __init__(self, store_url: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(WORKERS),
            "--threads",
            "4",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--reuse-port",
            "--keep-alive",
            "0",
            "--graceful-timeout",
            str(GRACEFUL_TIMEOUT_S),
            "--chdir",
            str(EXAMPLES),
            "--access-logfile",
            "-",
            "--access-logformat",
            ACCESS_FORMAT,
            *self._no_control_socket(),
            "wsgi_app:app",
        ]
        # A vanished client's notification stream ends within two keep-alives (see stop()).
        env = {**os.environ, "TASKSTORE_URL": store_url, "MCP_KEEPALIVE_S": "0.5"}
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.hits: list[Hit] = []
        self._stderr: list[str] = []
        self._changed = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read_access_log, daemon=True),
            threading.Thread(target=self._read_error_log, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _no_control_socket() -> list[str]:
        # gunicorn >= 25 opens a control socket at a fixed path by default: not in tests.
        import gunicorn

        return ["--no-control-socket"] if gunicorn.version_info >= (25,) else []

    @property
    def stderr(self) -> str:
        """gunicorn's error log so far."""
        return "".join(self._stderr)

    def _read_access_log(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            hit = _hit(line)
            if hit is not None:
                with self._changed:
                    self.hits.append(hit)
                    self._changed.notify_all()

    def _read_error_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def mark(self) -> int:
        """A position in the access log: :meth:`since` gives what came after it."""
        with self._changed:
            return len(self.hits)

    def since(self, mark: int) -> list[Hit]:
        """The requests logged after ``mark``."""
        with self._changed:
            return self.hits[mark:]

    def wait_for(self, predicate: Callable[[list[Hit]], bool], timeout: float) -> bool:
        """Whether the access log satisfies ``predicate`` within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.hits):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def get(self, path: str) -> tuple[int, str, bytes]:
        """``GET path``: status, Content-Type and body."""
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as response:
                return response.status, response.headers["Content-Type"], response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read()

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """A stateless MCP 2026-07-28 ``tools/call`` (no tasks extension: answered inline)."""
        body = message("tools/call", params({"name": name, "arguments": arguments}, {}))
        request = urllib.request.Request(
            self.base + "/mcp",
            data=json.dumps(body).encode(),
            headers={
                **headers("tools/call", name),
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            reply: dict[str, Any] = json.loads(response.read())
        return reply

    def wait_ready(self) -> None:
        """Poll ``GET /healthz`` until both workers answered it 200."""

        def both_healthy(hits: list[Hit]) -> bool:
            return len(healthy_pids(hits)) >= WORKERS

        deadline = time.monotonic() + DEADLINE_S
        while not self.wait_for(both_healthy, timeout=0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"gunicorn did not get ready:\n{self.stderr[-4000:]}")
            try:
                self.get("/healthz")
            except (urllib.error.URLError, ConnectionError):
                pass  # no worker listens yet

    def stop(self) -> tuple[int, float]:
        """SIGTERM; the exit status and the seconds the graceful stop took."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(GRACEFUL_TIMEOUT_S + 15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)
        took = time.monotonic() - started
        for thread in self._threads:
            thread.join(15)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return self.proc.returncode, took


def healthy_pids(hits: list[Hit]) -> set[int]:
    """The workers that answered ``GET /healthz`` with 200 among ``hits``."""
    return {h.pid for h in hits if h.path == "/healthz" and h.status == 200}


def until_spread(run: Callable[[], T], served_by: Callable[[T], set[int]]) -> tuple[T, set[int]]:
    """Run a scenario until ``served_by`` (the pids that served the requests in question) names
    both workers, at most :data:`ATTEMPTS` times; the last run's observations and pids."""
    for _ in range(ATTEMPTS):
        out = run()
        pids = served_by(out)
        if len(pids) >= WORKERS:
            break
    return out, pids


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """The example app under gunicorn on a fresh SQLite file, both workers answering."""
    need_modules("gunicorn")
    store = tmp_path_factory.mktemp("gunicorn") / "tasks.db"
    served = Gunicorn(f"sqlite:///{store}")
    served.wait_ready()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def fastmcp_python() -> Path:
    """FastMCP's venv with the SEP-2663 client (.ci/setup-modern-client.sh)."""
    venv = Path(os.environ.get("TASKSTORE_MODERN_CLIENT_VENV", MODERN_VENV))
    python = venv / "bin" / "python"
    if not python.exists():
        unavailable(f"the client venv is missing at {venv}; run .ci/setup-modern-client.sh")
    probe = [str(python), "-c", "import httpx2, fastmcp, fastmcp_tasks"]
    if subprocess.run(probe, capture_output=True, timeout=120).returncode != 0:
        unavailable(f"the venv at {venv} cannot import its client; run .ci/setup-modern-client.sh")
    return python


def test_the_app_routes_answer_beside_the_endpoint(gunicorn: Gunicorn) -> None:
    """``/``, ``/api/hello`` and a 404 are the application's; ``/healthz`` and ``/mcp`` (its
    ``hello`` tool) the endpoint's (both workers answered ``/healthz`` before any test ran)."""
    status, content_type, body = gunicorn.get("/")
    assert (status, content_type) == (200, "text/plain; charset=utf-8")
    assert b"/mcp" in body
    status, content_type, body = gunicorn.get("/api/hello?name=Ada")
    assert (status, content_type) == (200, "application/json")
    hello = json.loads(body)
    assert hello["message"] == "Hello, Ada!"
    assert int(hello["worker"]) in healthy_pids(gunicorn.since(0))
    status, _, body = gunicorn.get("/nope")
    assert (status, body) == (404, b"Not found\n")
    assert gunicorn.get("/healthz") == (200, "application/json", b'{"status":"ok"}')
    # The endpoint itself: the application's own tool, and a GET without a session refused
    # the MCP way.
    called = gunicorn.call_tool("hello", {"name": "Ada"})["result"]
    assert called["isError"] is False
    assert called["structuredContent"]["message"] == "Hello, Ada!"
    status, content_type, body = gunicorn.get("/mcp")
    assert (status, content_type) == (405, "application/json")
    assert json.loads(body)["error"]["message"] == "Method not allowed without a session"


def test_a_2025_11_25_session_and_its_task_are_served_by_both_workers(
    gunicorn: Gunicorn, run_client: Callable[..., dict[str, Any]]
) -> None:
    """The official client's session (elicit scenario): ``confirm_action`` as a task, its
    elicitation answered through ``tasks/result``, the result fetched. The session's requests
    answered 200 (its ``tools/call`` and the ``tasks/*`` of that one task; notifications and
    the elicitation's answer get 202) were served by both workers."""
    url = gunicorn.base + "/mcp"
    sessions: list[str] = []

    def run() -> dict[str, Any]:
        mark = gunicorn.mark()
        out = run_client("elicit", url)
        # The client ends its session with a DELETE after everything else.
        ended = gunicorn.wait_for(
            lambda hits: any(h.method == "DELETE" for h in hits[mark:]), DEADLINE_S
        )
        assert ended, gunicorn.since(mark)
        # Its session is the one its POSTs carried (an earlier run's notification stream may
        # end, and be logged, meanwhile).
        seen = {h.session for h in gunicorn.since(mark) if h.method == "POST" and h.session}
        assert len(seen) == 1, seen
        sessions.append(seen.pop())
        assert out == {
            "sawInputRequired": True,
            "asked": ["Proceed with: deploy?"],
            "text": "Done: deploy",
            "final": "completed",
        }
        return out

    def served_by(out: dict[str, Any]) -> set[int]:
        return {
            h.pid
            for h in gunicorn.since(0)
            if h.session == sessions[-1] and h.method == "POST" and h.status == 200
        }

    _, pids = until_spread(run, served_by)
    assert len(pids) == WORKERS, f"{len(sessions)} sessions, each on one worker"


def test_a_2026_07_28_task_is_fetched_through_the_other_worker(
    gunicorn: Gunicorn, fastmcp_python: Path
) -> None:
    """FastMCP's tasks-extension client: ``long_job`` as a task, polled to completion and its
    result fetched, where a worker other than the one that created it answered ``tasks/get``;
    ``word_count`` and ``confirm_action`` (answered through the elicitation handler) too."""
    url = gunicorn.base + "/mcp"
    windows: list[list[Hit]] = []

    def run() -> dict[str, Any]:
        mark = gunicorn.mark()
        done = subprocess.run(
            [str(fastmcp_python), str(MODERN_SCENARIOS), "demo_tools", url, ""],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"client failed:\n{done.stderr[-4000:]}"
        out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        # Every request the client recorded is in the access log (each logged once answered).
        sent = [x["method"] for x in out["wire"]]

        def logged(hits: list[Hit]) -> bool:
            methods = [h.mcp_method for h in hits[mark:]]
            return all(methods.count(m) >= sent.count(m) for m in set(sent))

        assert gunicorn.wait_for(logged, DEADLINE_S), (sent, gunicorn.since(mark))
        windows.append(gunicorn.since(mark))
        assert_demo_tools(out)
        return out

    def served_by(out: dict[str, Any]) -> set[int]:
        # The job's tools/call is the client's first; its tasks/get polls follow it up to the
        # client's next request of another method (it awaits each answer before the next).
        hits = [h for h in windows[-1] if h.method == "POST" and h.mcp_method is not None]
        first = next(i for i, h in enumerate(hits) if h.mcp_method == "tools/call")
        creator = hits[first].pid
        polls: set[int] = set()
        for hit in hits[first + 1 :]:
            if hit.mcp_method != "tasks/get":
                break
            polls.add(hit.pid)
        return {creator} | polls

    _, pids = until_spread(run, served_by)
    assert len(pids) == WORKERS, f"{len(windows)} runs: every tasks/get on the creating worker"


def assert_demo_tools(out: dict[str, Any]) -> None:
    """The observations of the ``demo_tools`` scenario."""
    assert out["protocolVersion"] == "2026-07-28"
    job = out["job"]
    task_id = job["created"]["taskId"]
    assert job["created"]["status"] == "working"
    assert job["created"]["resultType"] == "task"
    assert job["final"]["taskId"] == task_id
    assert job["final"]["status"] == "completed"
    structured = {"completedSteps": 3, "cancelled": False}
    assert job["final"]["result"]["structuredContent"] == structured
    assert job["final"]["result"]["isError"] is False
    assert job["result"]["structured"] == structured
    assert job["result"]["isError"] is False
    assert json.loads(job["result"]["text"]) == structured
    polls = [x for x in out["wire"] if x["method"] == "tasks/get" and x["taskId"] == task_id]
    assert polls and all(x["status"] == 200 for x in polls)
    assert out["wordCount"] == {"structured": {"words": 3, "characters": 13}, "isError": False}
    assert out["confirm"] == {
        "text": "Done: ship",
        "isError": False,
        "asked": ["Proceed with: ship?"],
    }


def test_sigterm_stops_gunicorn_and_both_workers_cleanly(gunicorn: Gunicorn) -> None:
    """SIGTERM (last: it ends the module's server): both workers finish their requests and
    exit on their own, well within the graceful timeout, and gunicorn exits 0."""
    pids = healthy_pids(gunicorn.since(0))
    returncode, took = gunicorn.stop()
    assert returncode == 0, gunicorn.stderr[-4000:]
    assert took < GRACEFUL_TIMEOUT_S / 2, gunicorn.stderr[-4000:]
    for pid in pids:
        assert f"Worker exiting (pid: {pid})" in gunicorn.stderr
    assert "SIGKILL" not in gunicorn.stderr
    assert "Traceback" not in gunicorn.stderr
