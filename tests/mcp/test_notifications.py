"""notifications/tasks/status: message shape and robustness against failing senders."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from support.mcp import ListSender
from taskstore import TaskStore
from taskstore.mcp import StatusNotifier, status_notification

RELATED = "io.modelcontextprotocol/related-task"


def test_status_notification_drops_related_task_meta() -> None:
    """The notification carries the Task flat and never the related-task _meta key."""
    task = {
        "taskId": "t",
        "status": "working",
        "ttl": None,
        "_meta": {RELATED: {"taskId": "t"}, "k": 1},
    }
    assert status_notification(task) == {
        "jsonrpc": "2.0",
        "method": "notifications/tasks/status",
        "params": {"taskId": "t", "status": "working", "ttl": None, "_meta": {"k": 1}},
    }
    bare = {"taskId": "t", "status": "failed", "ttl": 5, "_meta": {RELATED: {"taskId": "t"}}}
    assert status_notification(bare)["params"] == {"taskId": "t", "status": "failed", "ttl": 5}


def test_every_status_change_is_notified_in_order(mstore: TaskStore) -> None:
    """working → input_required → working → completed gives three notifications, in order."""
    sender = ListSender()
    detach = StatusNotifier(mstore).attach("alice", sender)
    record = mstore.create("alice")
    mstore.update_status(record.task_id, "alice", "input_required", "need input")
    mstore.update_status(record.task_id, "alice", "working")
    mstore.set_message(record.task_id, "alice", "not a status change")
    mstore.complete(record.task_id, "alice", {"content": []})
    detach()
    assert [m["params"]["status"] for m in sender.messages] == [
        "input_required",
        "working",
        "completed",
    ]
    assert sender.messages[0]["params"]["statusMessage"] == "need input"


def test_a_failing_sender_never_breaks_the_store(
    mstore: TaskStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A sender that raises is logged; the write that triggered it still succeeds."""

    class Broken:
        def send(self, message: dict[str, Any]) -> None:
            raise OSError("stream gone")

    detach = StatusNotifier(mstore).attach("alice", Broken())
    record = mstore.create("alice")
    with caplog.at_level(logging.WARNING, logger="taskstore.mcp"):
        cancelled = mstore.cancel(record.task_id, "alice")
    detach()
    assert cancelled.status.value == "cancelled"
    assert "a notification sender failed" in caplog.text
