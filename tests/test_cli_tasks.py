"""``python -m taskstore tasks ...``: the operator's commands.

In-process on the in-memory store (the command gets the test's store), and through the real
console entry point (``python -m taskstore``, a subprocess) against every durable backend:
SQLite, a real redis-server, DynamoDB Local and PostgreSQL, with ``--json`` output parsed back,
the exit codes, and ``watch`` seeing a completion made by another process.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskstore
from support.servers import free_port, fresh_name, need_modules
from taskstore import ManualClock, TaskStatus, TaskStore
from taskstore._cli_tasks import EXIT_BACKEND, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_USAGE, run_tasks
from taskstore.backends.memory import InMemoryBackend
from taskstore.cli import _build_parser
from taskstore.security import SecurityConfig
from taskstore.testing import T0

# -- in-process, memory ---------------------------------------------------------------------


@pytest.fixture
def store() -> Iterator[TaskStore]:
    """A memory store on a manual clock, anonymous owners allowed."""
    made = TaskStore(
        InMemoryBackend(), security=SecurityConfig(allow_anonymous=True), clock=ManualClock(T0)
    )
    yield made
    made.close()


def run(store: TaskStore, *argv: str) -> tuple[int, str]:
    """Run ``tasks ARGV`` on ``store``; the exit status and what it printed."""
    args = _build_parser().parse_args(["tasks", *argv])
    out = io.StringIO()
    return run_tasks(args, out, store=store), out.getvalue()


def populate(store: TaskStore) -> dict[str, str]:
    """alice: one working, one completed, one failed; bob: one input_required, one cancelled
    (created 1 ms apart, in that order)."""
    clock: ManualClock = store.clock  # type: ignore[assignment]
    ids: dict[str, str] = {}

    def create(owner: str) -> str:
        task_id = store.create(owner, ttl_ms=60_000).task_id
        clock.advance(1)
        return task_id

    ids["working"] = create("alice")
    ids["completed"] = create("alice")
    store.complete(ids["completed"], "alice", {"answer": 42})
    ids["failed"] = create("alice")
    store.fail(ids["failed"], "alice", {"code": -32603, "message": "boom"})
    ids["input_required"] = create("bob")
    store.update_status(ids["input_required"], "bob", TaskStatus.INPUT_REQUIRED)
    ids["cancelled"] = create("bob")
    store.cancel(ids["cancelled"], "bob")
    return ids


def test_stats_counts_statuses_owners_and_the_oldest_unfinished_task(store: TaskStore) -> None:
    """--json stats: exact counts, the oldest unfinished task (created first), and expired
    tasks awaiting cleanup counted apart from live ones."""
    ids = populate(store)
    expiring = store.create("carol", ttl_ms=1_000).task_id
    store.clock.advance(2_000)  # type: ignore[attr-defined]
    code, out = run(store, "stats", "--json")
    assert code == 0
    stats = json.loads(out)
    assert stats["tasks"] == 5
    assert stats["by_status"] == {
        "working": 1,
        "input_required": 1,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
    }
    assert stats["owners"] == 2
    assert stats["expired"] == 1
    assert stats["oldest_unfinished"]["task_id"] == ids["working"]
    assert stats["oldest_unfinished"]["owner"] == "alice"
    assert stats["oldest_unfinished"]["age_ms"] == 2_005
    assert expiring not in out
    code, human = run(store, "stats")
    assert code == 0 and "owners      2" in human and ids["working"] in human


def test_list_by_owner_and_status_and_across_owners(store: TaskStore) -> None:
    """list --owner is newest first; --status filters; without --owner every owner's tasks;
    --limit cuts and says more are left."""
    ids = populate(store)
    code, out = run(store, "--json", "list", "--owner", "alice")
    assert code == 0
    alice = json.loads(out)
    assert [t["taskId"] for t in alice["tasks"]] == [
        ids["failed"],
        ids["completed"],
        ids["working"],
    ]
    assert {t["owner"] for t in alice["tasks"]} == {"alice"}
    code, out = run(store, "list", "--json", "--status", "input_required")
    assert [t["taskId"] for t in json.loads(out)["tasks"]] == [ids["input_required"]]
    code, out = run(store, "list", "--json")
    assert sorted(t["taskId"] for t in json.loads(out)["tasks"]) == sorted(ids.values())
    code, out = run(store, "list", "--json", "--limit", "2")
    assert len(json.loads(out)["tasks"]) == 2 and json.loads(out)["more"] is True
    code, human = run(store, "list")
    assert code == 0 and human.splitlines()[0].split() == [
        "TASK",
        "ID",
        "OWNER",
        "STATUS",
        "CREATED",
        "UPDATED",
        "MESSAGE",
    ]
    assert run(store, "list", "--status", "sleeping")[0] == EXIT_REFUSED


def test_get_shows_the_record_variables_and_with_result_the_outcome(store: TaskStore) -> None:
    """get: the task, its owner and variables; --result adds the outcome; another owner's
    task is not found (exit 3)."""
    ids = populate(store)
    store.set_variables(ids["working"], "alice", {"step": 2})
    code, out = run(store, "get", ids["working"], "--owner", "alice", "--json")
    got = json.loads(out)
    assert code == 0 and got["status"] == "working" and got["variables"] == {"step": 2}
    assert "outcome" not in got
    code, out = run(store, "get", ids["completed"], "--owner", "alice", "--json", "--result")
    assert json.loads(out)["outcome"] == {"result": {"answer": 42}}
    code, out = run(store, "get", ids["failed"], "--owner", "alice", "--json", "--result")
    assert json.loads(out)["outcome"] == {"error": {"code": -32603, "message": "boom"}}
    assert run(store, "get", ids["working"], "--owner", "bob")[0] == EXIT_NOT_FOUND
    assert run(store, "get", "no-such-task", "--owner", "alice")[0] == EXIT_NOT_FOUND


def test_cancel_and_fail_a_stuck_task_and_refuse_finished_ones(store: TaskStore) -> None:
    """cancel and fail move unfinished tasks (with the message); on a finished task they are
    refused (exit 4) and change nothing."""
    ids = populate(store)
    code, out = run(store, "cancel", ids["working"], "--owner", "alice", "--message", "by ops")
    assert code == 0 and out.strip() == f"{ids['working']}: cancelled"
    assert store.get(ids["working"], "alice").task.status_message == "by ops"
    code, out = run(
        store, "fail", ids["input_required"], "--owner", "bob", "--message", "stuck", "--json"
    )
    assert code == 0 and json.loads(out)["status"] == "failed"
    assert store.get_result(ids["input_required"], "bob").error == {
        "code": -32603,
        "message": "stuck",
    }
    assert run(store, "cancel", ids["completed"], "--owner", "alice")[0] == EXIT_REFUSED
    assert store.get(ids["completed"], "alice").status is TaskStatus.COMPLETED


def test_cleanup_removes_expired_tasks(store: TaskStore) -> None:
    """cleanup reports how many expired tasks it removed."""
    store.create("alice", ttl_ms=1_000)
    store.create("alice", ttl_ms=1_000)
    store.create("alice", ttl_ms=60_000)
    store.clock.advance(2_000)  # type: ignore[attr-defined]
    code, out = run(store, "cleanup", "--json")
    assert (code, json.loads(out)) == (0, {"removed": 2})
    assert json.loads(run(store, "stats", "--json")[1])["expired"] == 0


def test_usage_errors_exit_2() -> None:
    """No store at all, a bad URL or an unknown scheme: exit 2 with the reason on stderr."""
    for argv in (
        ["tasks", "stats"],
        ["tasks", "--store", "nosuch://x", "stats"],
        ["tasks", "--store", "memory://?bogus=1", "stats"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "taskstore", *argv],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "TASKSTORE_URL"},
            timeout=60,
        )
        assert proc.returncode == EXIT_USAGE, (argv, proc.stderr)
        assert proc.stderr.startswith("taskstore tasks: "), proc.stderr


# -- through the console entry point, on every durable backend --------------------------------


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("redis", marks=[pytest.mark.redis, pytest.mark.redis_server]),
        pytest.param("dynamodb_local", marks=[pytest.mark.dynamodb, pytest.mark.dynamodb_local]),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A durable store URL the test process and the commands both open."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tasks.db'}"
    elif request.param == "redis":
        need_modules("redis")
        yield f"{request.getfixturevalue('redis_server').url}?prefix={fresh_name()}"
    elif request.param == "dynamodb_local":
        need_modules("boto3")
        request.getfixturevalue("aws_env")
        local = request.getfixturevalue("dynamodb_local")
        client = request.getfixturevalue("local_client")
        from taskstore.backends.dynamodb import DynamoDbBackend

        table = fresh_name()
        DynamoDbBackend.create_table(table, client=client, ttl=False)
        yield f"dynamodb://{table}?region=us-east-1&endpoint_url={local.endpoint_url}"
        client.delete_table(TableName=table)
    else:
        need_modules("psycopg", "psycopg_pool")
        yield request.getfixturevalue("postgres_url")(fresh_name().replace("-", "_"))


def cli(url: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m taskstore tasks --store URL ARGV``, a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "taskstore", "tasks", "--store", url, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_command_through_the_console_entry_point(shared_url: str) -> None:
    """stats, list, get --result, cancel, fail and cleanup on a durable store, --json parsed
    back, with the exit codes of a missing task and a refused transition."""
    with taskstore.open(shared_url, allow_anonymous=True) as writer:
        working = writer.create("alice", ttl_ms=600_000).task_id
        done = writer.create("alice", ttl_ms=600_000).task_id
        writer.complete(done, "alice", {"rows": 3})
        stuck = writer.create("bob", ttl_ms=600_000).task_id
        # A record that expired a second ago, awaiting cleanup (Redis reclaims space a minute
        # after expiry by itself; the DynamoDB table has no native TTL here).
        expired = writer.create("carol", ttl_ms=600_000)
        stored = writer.backend.get(("carol", expired.task_id))
        writer.backend.put(("carol", expired.task_id), stored.data, int(time.time() * 1000) - 1_000)

        stats = json.loads(cli(shared_url, "stats", "--json").stdout)
        assert stats["tasks"] == 3 and stats["owners"] == 2 and stats["expired"] == 1
        assert stats["by_status"]["working"] == 2 and stats["by_status"]["completed"] == 1
        assert stats["oldest_unfinished"]["task_id"] == working

        listed = json.loads(cli(shared_url, "list", "--owner", "alice", "--json").stdout)
        expected = [record.task_id for record in writer.list("alice").tasks]
        assert [t["taskId"] for t in listed["tasks"]] == expected
        assert sorted(expected) == sorted([done, working])
        everyone = json.loads(cli(shared_url, "--json", "list", "--status", "working").stdout)
        assert sorted(t["taskId"] for t in everyone["tasks"]) == sorted([working, stuck])

        got = cli(shared_url, "get", done, "--owner", "alice", "--result", "--json")
        assert got.returncode == 0 and json.loads(got.stdout)["outcome"] == {"result": {"rows": 3}}
        assert cli(shared_url, "get", done, "--owner", "bob").returncode == EXIT_NOT_FOUND

        failed = cli(shared_url, "fail", stuck, "--owner", "bob", "--message", "worker died")
        assert failed.returncode == 0, failed.stderr
        assert writer.get(stuck, "bob").status is TaskStatus.FAILED
        refused = cli(shared_url, "cancel", done, "--owner", "alice")
        assert refused.returncode == EXIT_REFUSED and "taskstore tasks:" in refused.stderr
        assert cli(shared_url, "cancel", working, "--owner", "alice").returncode == 0
        assert writer.get(working, "alice").status is TaskStatus.CANCELLED

        cleaned = cli(shared_url, "cleanup", "--json")
        assert cleaned.returncode == 0 and json.loads(cleaned.stdout)["removed"] == 1
        assert json.loads(cli(shared_url, "stats", "--json").stdout)["expired"] == 0


def test_watch_sees_a_completion_made_by_another_process(shared_url: str) -> None:
    """watch --json prints the status change another process makes (DynamoDB has no
    cross-process events: there it is skipped, as its --help says)."""
    if shared_url.startswith("dynamodb://"):
        pytest.skip("DynamoDB carries no events across processes (watch --help says so)")
    with taskstore.open(shared_url, allow_anonymous=True) as writer:
        task_id = writer.create("alice", ttl_ms=600_000).task_id
        watcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskstore",
                "tasks",
                "--store",
                shared_url,
                "watch",
                "--json",
                "--count",
                "1",
                "--timeout",
                "30",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert watcher.stderr is not None
            assert watcher.stderr.readline().strip() == "watching"
            writer.complete(task_id, "alice", {"ok": True})
            out, err = watcher.communicate(timeout=30)
        finally:
            watcher.kill()
        assert watcher.returncode == 0, err
        change = json.loads(out.splitlines()[0])
        assert (change["taskId"], change["owner"], change["status"]) == (
            task_id,
            "alice",
            "completed",
        )


@pytest.mark.redis
def test_an_unreachable_store_exits_1_not_3() -> None:
    """A Redis URL nobody listens on: exit 1 (the store failed), never "not found"."""
    need_modules("redis")
    url = f"redis://127.0.0.1:{free_port()}/0?retry_deadline_ms=1000"
    proc = cli(url, "get", "x", "--owner", "alice")
    assert proc.returncode == EXIT_BACKEND, proc.stderr
    assert "the store failed" in proc.stderr
