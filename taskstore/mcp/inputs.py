"""Relaying tasks' input requests to 2025-11-25 clients, and their answers back.

A tool's requests for input live in its task's record (:mod:`taskstore.input_requests`), so
any server process can relay them. A 2025-11-25 client that sees ``input_required`` calls
``tasks/result``; that call's stream sends each outstanding request as a JSON-RPC request whose
id names the task and the request's key, and the client's JSON-RPC response, posted back on
its session (to any process), is written into the record by :meth:`InputBroker.resolve`. Two
streams open on one task at the same moment may both carry a request; the first answer wins,
the second is ignored. Every method is thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskstore.aliases import JsonDict
from taskstore.errors import TaskStoreError
from taskstore.mcp.jsonrpc import request
from taskstore.record import TaskRecord
from taskstore.store import TaskStore
from taskstore.types import META_RELATED_TASK, RelatedTaskMetadata, to_builtins

__all__ = ["REQUEST_ID_PREFIX", "InputBroker"]

#: Prefix of the JSON-RPC ids of relayed input requests: ``taskstore-input:<task>:<key>``.
REQUEST_ID_PREFIX = "taskstore-input:"


class InputBroker:
    """Relays the input requests of ``store``'s tasks to 2025-11-25 clients.

    :param store: where the tasks (and their requests) live.
    """

    def __init__(self, store: TaskStore) -> None:
        self.store = store

    @staticmethod
    def request_id(task_id: str, key: str) -> str:
        """The JSON-RPC id of the relayed request ``key`` of task ``task_id``."""
        return f"{REQUEST_ID_PREFIX}{task_id}:{key}"

    def messages(self, record: TaskRecord, sent: set[str]) -> list[JsonDict]:
        """The JSON-RPC requests for ``record``'s outstanding input requests whose keys are
        not in ``sent`` (which they are added to). Each names its task in ``_meta``."""
        messages = []
        for key, input_request in record.input_requests.items():
            if key in sent:
                continue
            sent.add(key)
            params = dict(input_request.get("params") or {})
            meta = params.get("_meta")
            merged: JsonDict = dict(meta) if isinstance(meta, Mapping) else {}
            merged[META_RELATED_TASK] = to_builtins(RelatedTaskMetadata(task_id=record.task_id))
            params["_meta"] = merged
            method = str(input_request.get("method"))
            messages.append(request(self.request_id(record.task_id, key), method, params))
        return messages

    def resolve(self, response: Mapping[str, Any], owner: str) -> bool:
        """Write a client's JSON-RPC response to a relayed request into its task.

        :returns: ``False`` when the id names no outstanding request of ``owner``'s tasks
            (unknown, already answered, another owner's, or the task ended): the response is
            ignored without a trace.
        """
        request_id = response.get("id")
        if not isinstance(request_id, str) or not request_id.startswith(REQUEST_ID_PREFIX):
            return False
        task_id, _, key = request_id[len(REQUEST_ID_PREFIX) :].rpartition(":")
        if not task_id or not key:
            return False
        if "result" in response:
            answer: Any = response["result"]
        else:
            answer = {"error": response.get("error")}
        try:
            before = self.store.get(task_id, owner)
            if key not in before.input_requests:
                return False
            after = self.store.answer_input(task_id, owner, {key: answer})
        except TaskStoreError:
            return False
        return key not in after.input_requests

    def outstanding(self, task_id: str, owner: str) -> int:
        """How many requests of the task still wait for an answer (0 for an unknown task)."""
        try:
            return len(self.store.get(task_id, owner).input_requests)
        except TaskStoreError:
            return 0
