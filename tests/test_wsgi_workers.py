"""Several workers, one deployment: a 2025-11-25 session started on one worker is accepted by
every other worker of the deployment (signed session ids, ``taskstore.mcp.sessions``).

Each "worker" here is an :class:`McpWsgiApp` of its own (its own session table) over one
store, as gunicorn's workers are over one durable store; ``tests/e2e/test_shared_workers.py``
does the same with real server processes on SQLite, PostgreSQL and Redis.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskstore
from support.mcp import build_server, call_app, open_session, wait_until
from taskstore import TaskStore
from taskstore.backends.memory import InMemoryBackend
from taskstore.mcp import McpServer
from taskstore.mcp.mrtr import RequestStateCodec
from taskstore.mcp.sessions import SESSION_KEY_ENV
from taskstore.wsgi import McpWsgiApp, bearer_authenticator

KEY = b"k" * 32


def rpc(
    method: str, params: dict[str, object] | None = None, request_id: int = 1
) -> dict[str, object]:
    """One JSON-RPC request."""
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}


@pytest.fixture
def server() -> Iterator[McpServer]:
    """A server over a store with a deployment key (as ``taskstore.open`` gives one)."""
    store = TaskStore(InMemoryBackend(), deployment_key=KEY)
    server = build_server(store)
    yield server
    server.close()
    store.close()


def workers(server: McpServer, count: int = 2, **options: object) -> list[McpWsgiApp]:
    """``count`` workers (session tables of their own) over ``server``'s store."""
    return [McpWsgiApp(server, **options) for _ in range(count)]  # type: ignore[arg-type]


def status(app: McpWsgiApp, session: str, method: str = "ping", **headers: str) -> int:
    """The HTTP status of ``method`` on ``session`` through ``app``."""
    reply = call_app(app, body=rpc(method), headers={"Mcp-Session-Id": session, **headers})
    return reply.status


def test_an_anonymous_session_and_its_tasks_are_served_by_every_worker(server: McpServer) -> None:
    """Initialized on A, the session works on B: a task created through A is listed, polled
    and fetched through B, and its owner (the session) is the same on both."""
    a, b = workers(server)
    session = open_session(a)
    headers = {"Mcp-Session-Id": session}
    created = call_app(
        a,
        body=rpc("tools/call", {"name": "echo", "arguments": {"text": "hi"}, "task": {}}),
        headers=headers,
    ).json()
    task_id = created["result"]["task"]["taskId"]
    assert status(b, session) == 200
    listed = call_app(b, body=rpc("tasks/list"), headers=headers).json()
    assert [task["taskId"] for task in listed["result"]["tasks"]] == [task_id]

    def completed() -> bool:
        got = call_app(b, body=rpc("tasks/get", {"taskId": task_id}), headers=headers).json()
        return bool(got["result"]["status"] == "completed")

    assert wait_until(completed)
    result = call_app(b, body=rpc("tasks/result", {"taskId": task_id}), headers=headers).json()
    assert result["result"]["content"] == [{"type": "text", "text": "hi"}]
    assert len(b.sessions) == 1


def test_a_session_is_answered_by_the_other_worker_for_its_own_identity_only(
    server: McpServer,
) -> None:
    """An authenticated session adopted by another worker stays bound to its subject: bob
    presenting alice's session id gets 404 there, alice gets 200."""
    authenticate = bearer_authenticator({"ta": "alice", "tb": "bob"})
    a, b = workers(server, authenticate=authenticate)
    session = open_session(a, headers={"Authorization": "Bearer ta"})
    assert status(b, session, Authorization="Bearer tb") == 404
    assert status(b, session, Authorization="Bearer ta") == 200
    # Once adopted, the other identities are still refused.
    assert status(b, session, Authorization="Bearer tb") == 404


def test_ids_not_signed_by_the_deployment_are_unknown(server: McpServer) -> None:
    """A tampered id, a made-up one of the right shape, and an id signed with another key are
    404 on every worker, and adopt nothing."""
    (a,) = workers(server, 1)
    (other,) = workers(server, 1, session_key=b"another deployment")
    session = open_session(a)
    raw = bytearray(base64.urlsafe_b64decode(session))
    raw[0] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode()
    made_up = base64.urlsafe_b64encode(bytes(36)).decode()
    (b,) = workers(server, 1)
    for candidate in (tampered, made_up, "nope", session + "x", "é" * 48):
        assert status(b, candidate) == 404, candidate
    assert status(other, session) == 404
    assert len(b.sessions) == 0 and len(other.sessions) == 0


def test_a_worker_never_revives_a_session_it_ended(server: McpServer) -> None:
    """DELETE on B ends the adopted session there for good (B refuses it from then on); A,
    which started it, ends sessions it issued as before (its own ids are never adopted)."""
    a, b = workers(server)
    session = open_session(a)
    assert status(b, session) == 200
    assert call_app(b, "DELETE", headers={"Mcp-Session-Id": session}).status == 200
    assert status(b, session) == 404
    assert call_app(a, "DELETE", headers={"Mcp-Session-Id": session}).status == 200
    assert status(a, session) == 404
    assert len(a.sessions) == 0 and len(b.sessions) == 0


def test_an_adoption_into_a_full_table_of_busy_sessions_is_503(server: McpServer) -> None:
    """When B's table is full of sessions holding working tasks, adopting one more is
    refused with 503 and Retry-After (never by evicting a busy session)."""
    a = McpWsgiApp(server)
    b = McpWsgiApp(server, max_sessions=1)
    b.sessions.recheck_s = 0.0
    busy = open_session(b)
    call_app(
        b,
        body=rpc("tools/call", {"name": "wait_for_cancel", "arguments": {}, "task": {}}),
        headers={"Mcp-Session-Id": busy},
    )
    other = open_session(a)
    reply = call_app(b, body=rpc("ping"), headers={"Mcp-Session-Id": other})
    assert reply.status == 503 and reply.headers["retry-after"] == "1"
    assert reply.json()["error"]["code"] == -32000
    assert status(b, busy) == 200


def test_the_key_comes_from_the_environment_when_the_store_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a deployment key, workers sharing $TASKSTORE_SESSION_KEY accept each other's
    sessions; without either, each worker's key is its own."""
    store = TaskStore(InMemoryBackend())
    server = build_server(store)
    try:
        a, b = workers(server)
        assert status(b, open_session(a)) == 404
        monkeypatch.setenv(SESSION_KEY_ENV, "shared secret")
        a, b = workers(server)
        assert status(b, open_session(a)) == 200
    finally:
        server.close()
        store.close()


def test_open_gives_every_store_on_one_url_the_same_deployment_key(tmp_path: Path) -> None:
    """Stores opened on the same durable URL share a deployment key (store options aside);
    another URL gets another; memory:// and a store built from a backend have none."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with (
        taskstore.open(url) as first,
        taskstore.open(url + "?max_tasks_per_owner=5") as second,
        taskstore.open(f"sqlite:///{tmp_path / 'b.db'}") as other,
    ):
        assert first.deployment_key is not None and len(first.deployment_key) == 32
        assert first.deployment_key == second.deployment_key
        assert other.deployment_key != first.deployment_key
    with taskstore.open("memory://") as memory:
        assert memory.deployment_key is None
    assert TaskStore(InMemoryBackend()).deployment_key is None


def test_request_state_sealed_by_one_worker_opens_on_another() -> None:
    """MCP 2026-07-28 requestState: codecs of two workers with the same deployment key open
    each other's states; one with another key refuses them."""
    a = RequestStateCodec(deployment_key=KEY)
    b = RequestStateCodec(deployment_key=KEY)
    stranger = RequestStateCodec(deployment_key=b"x" * 32)
    token = a.seal("call", "caller", {}, ["k"])
    assert b.open(token, "call", "caller").pending == {"k": ""}
    with pytest.raises(taskstore.TaskStoreError):
        stranger.open(token, "call", "caller")
