"""The workflow engine, handoff and continuation over a fake tool invoker (DESIGN §9b)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from taskstore import TaskStatus, TaskStore
from taskstore.testing import run_barrier_threads
from taskstore.workflow import (
    PromptArgument,
    SequentialWorkflow,
    WorkflowDefinitionError,
    WorkflowEngine,
    WorkflowStep,
    const,
    from_step,
    plain_prompt_reply,
    prompt_arg,
    record_continuation,
    reply,
)
from taskstore.workflow.progress import PAUSE_REASON, PROGRESS, RESULT_PREFIX, SKIPPED

OWNER = "alice"
SOURCES = {
    "sales": [
        {"region": "eu", "amount": 10},
        {"region": "us", "amount": 5},
        {"region": "eu", "amount": 2.5},
    ]
}


def _ok(value: dict[str, Any]) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": json.dumps(value)}],
        "structuredContent": value,
        "isError": False,
    }


class FakeTools:
    """fetch_data / transform_data / store_data with the example's contracts."""

    schemas: ClassVar[dict[str, list[str]]] = {
        "fetch_data": ["source"],
        "transform_data": ["rows"],
        "store_data": ["rows"],
        "needs_two": ["a", "b"],
        "text_only": [],
    }

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def required_fields(self, tool: str) -> list[str]:
        return self.schemas[tool]

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((tool, arguments))
        if tool == "fetch_data":
            rows = SOURCES.get(arguments["source"])
            if rows is None:
                return {
                    "content": [{"type": "text", "text": f"Unknown source: {arguments['source']}"}],
                    "isError": True,
                }
            return _ok({"rows": rows})
        if tool == "transform_data":
            totals: dict[str, float] = {}
            for row in arguments["rows"]:
                totals[row["region"]] = totals.get(row["region"], 0) + row["amount"]
            return _ok(
                {
                    "rows": [{"region": r, "amount": a} for r, a in totals.items()],
                    "total": sum(totals.values()),
                }
            )
        if tool == "store_data":
            return _ok({"stored": len(arguments["rows"]), "destination": "memory"})
        if tool == "text_only":
            return {"content": [{"type": "text", "text": "plain words"}]}
        raise RuntimeError("boom")


def pipeline(**overrides: Any) -> SequentialWorkflow:
    steps = overrides.pop(
        "steps",
        [
            WorkflowStep(
                "fetch",
                "fetch_data",
                {"source": prompt_arg("source")},
                binding="raw_data",
                guidance="Fetch the {source} data",
                retryable=True,
            ),
            WorkflowStep(
                "transform",
                "transform_data",
                {"rows": from_step("raw_data", "rows")},
                binding="clean",
            ),
            WorkflowStep("store", "store_data", {"rows": from_step("clean", "rows")}),
        ],
    )
    return SequentialWorkflow(
        "data_pipeline",
        "Fetch, transform and store data",
        steps,
        [PromptArgument("source", "data source", required=True)],
        **overrides,
    )


@pytest.fixture
def tools() -> FakeTools:
    """Fresh fake tools."""
    return FakeTools()


@pytest.fixture
def engine(store: TaskStore, tools: FakeTools) -> WorkflowEngine:
    """An engine for the three-step pipeline."""
    workflow = pipeline()
    workflow.validate(lambda name: name in tools.schemas)
    return WorkflowEngine(workflow, store, tools)


def _statuses(result: dict[str, Any]) -> list[str]:
    return [step["status"] for step in result["_meta"]["steps"]]


def test_happy_path_completes_in_one_call(engine: WorkflowEngine, store: TaskStore) -> None:
    """All steps run server-side; the task completes with the summary result."""
    run = engine.start(OWNER, {"source": "sales"})
    result = reply(engine.workflow, run)
    assert result["_meta"]["task_status"] == "completed"
    assert _statuses(result) == ["completed"] * 3
    assert "pause_reason" not in result["_meta"]
    outcome = store.get_result(run.task_id, OWNER).result
    assert outcome["structuredContent"]["steps"]["transform"] == {
        "rows": [{"region": "eu", "amount": 12.5}, {"region": "us", "amount": 5}],
        "total": 17.5,
    }
    assert outcome["structuredContent"]["steps"]["store"] == {"stored": 2, "destination": "memory"}
    assert outcome["content"][0]["type"] == "text"
    assert store.get(run.task_id, OWNER).request_method == "data_pipeline"


def test_tool_error_pauses_and_skips_dependents(engine: WorkflowEngine, store: TaskStore) -> None:
    """A failing first step: toolError pause, dependents skipped with unresolvedDependency."""
    run = engine.start(OWNER, {"source": "nowhere"})
    result = reply(engine.workflow, run)
    meta = result["_meta"]
    assert set(meta) == {"task_id", "task_status", "steps", "pause_reason"}
    assert meta["task_status"] == "working"
    assert meta["steps"] == [
        {"name": "fetch", "tool": "fetch_data", "status": "failed"},
        {"name": "transform", "tool": "transform_data", "status": "skipped"},
        {"name": "store", "tool": "store_data", "status": "skipped"},
    ]
    assert meta["pause_reason"] == {
        "type": "toolError",
        "blockedStep": "fetch",
        "suggestedTool": "fetch_data",
        "error": "Unknown source: nowhere",
        "retryable": True,
    }
    variables = store.get(run.task_id, OWNER).variables
    assert variables[PAUSE_REASON] == meta["pause_reason"]
    assert variables[SKIPPED]["transform"] == {
        "type": "unresolvedDependency",
        "blockedStep": "transform",
        "suggestedTool": "fetch_data",
        "missingOutput": "raw_data",
        "producingStep": "fetch",
    }
    assert variables[SKIPPED]["store"]["missingOutput"] == "clean"
    assert variables[PROGRESS]["schemaVersion"] == 1
    assert variables[PROGRESS]["goal"] == "Fetch, transform and store data"


def test_handoff_names_every_remaining_call(engine: WorkflowEngine) -> None:
    """The last message is the assistant's handoff naming each call still to make, with
    placeholders and substituted guidance."""
    run = engine.start(OWNER, {"source": "nowhere"})
    messages = reply(engine.workflow, run)["messages"]
    last = messages[-1]
    assert last["role"] == "assistant"
    text = last["content"]["text"]
    for expected in (
        'fetch_data {"source": "nowhere"}',
        "transform_data",
        "store_data",
        '"<output from raw_data>.rows"',
        '"<output from clean>.rows"',
        "Fetch the nowhere data",
        "Unknown source: nowhere",
        run.task_id,
        '"_task_id"',
        "Retrying may help",
    ):
        assert expected in text, expected
    assert messages[0]["role"] == "user" and "data_pipeline" in messages[0]["content"]["text"]
    assert any("Calling fetch_data" in m["content"]["text"] for m in messages)


def test_continuation_completes_the_workflow(
    engine: WorkflowEngine, store: TaskStore, tools: FakeTools
) -> None:
    """The client's remaining calls with _task_id complete each step and then the task."""
    run = engine.start(OWNER, {"source": "nowhere"})
    fetched = tools.call("fetch_data", {"source": "sales"})
    assert record_continuation(
        store, OWNER, run.task_id, "fetch_data", {"source": "sales"}, fetched
    )
    variables = store.get(run.task_id, OWNER).variables
    assert PAUSE_REASON not in variables
    assert variables[RESULT_PREFIX + "fetch"] == {"rows": SOURCES["sales"]}
    transformed = tools.call("transform_data", {"rows": SOURCES["sales"]})
    assert record_continuation(store, OWNER, run.task_id, "transform_data", {}, transformed)
    assert store.get(run.task_id, OWNER).status is TaskStatus.WORKING
    stored = tools.call("store_data", {"rows": [1, 2]})
    assert record_continuation(store, OWNER, run.task_id, "store_data", {}, stored)
    assert store.get(run.task_id, OWNER).status is TaskStatus.COMPLETED
    summary = store.get_result(run.task_id, OWNER).result
    assert summary["structuredContent"]["steps"]["store"] == {"stored": 2, "destination": "memory"}


def test_continuation_extras_and_failures(engine: WorkflowEngine, store: TaskStore) -> None:
    """Tools outside the workflow are extras; a failed continuation marks the step failed."""
    run = engine.start(OWNER, {"source": "nowhere"})
    assert record_continuation(store, OWNER, run.task_id, "other", {"x": 1}, _ok({"y": 2}))
    failure = {"content": [{"type": "text", "text": "still down"}], "isError": True}
    assert record_continuation(store, OWNER, run.task_id, "fetch_data", {}, failure)
    variables = store.get(run.task_id, OWNER).variables
    assert variables["_workflow.extras"] == [
        {"tool": "other", "arguments": {"x": 1}, "output": {"y": 2}, "isError": False}
    ]
    assert variables[PAUSE_REASON]["error"] == "still down"


def test_continuation_never_raises(store: TaskStore) -> None:
    """Recording against unknown, foreign or non-workflow tasks returns False, never raises."""
    plain = store.create(OWNER)
    assert not record_continuation(store, OWNER, "no-such-task", "t", {}, _ok({}))
    assert not record_continuation(store, "bob", plain.task_id, "t", {}, _ok({}))
    assert not record_continuation(store, OWNER, plain.task_id, "t", {}, _ok({}))
    assert store.get(plain.task_id, OWNER).version == 1


def test_parallel_continuations_all_recorded(
    store: TaskStore, tools: FakeTools, atomic_backend: None
) -> None:
    """8 continuation calls in parallel on one workflow task are all recorded."""
    steps = [WorkflowStep(f"s{i}", "text_only", {}) for i in range(8)]
    workflow = SequentialWorkflow("eight", "eight steps", steps, [])
    engine = WorkflowEngine(workflow, store, tools)
    run = engine.start(OWNER, {})
    assert run.status is TaskStatus.COMPLETED  # sanity: it can run them all itself
    blocked = SequentialWorkflow(
        "eight", "eight steps", [WorkflowStep(f"s{i}", "needs_two", {}) for i in range(8)], []
    )
    paused = WorkflowEngine(blocked, store, tools).start(OWNER, {})
    assert paused.pause_reason is not None and paused.pause_reason["type"] == "schemaMismatch"
    results = run_barrier_threads(
        8,
        lambda i: record_continuation(
            store, OWNER, paused.task_id, "needs_two", {"a": i, "b": i}, _ok({"i": i})
        ),
    )
    assert results == [True] * 8
    record = store.get(paused.task_id, OWNER)
    assert record.status is TaskStatus.COMPLETED
    assert sorted(record.variables[RESULT_PREFIX + f"s{i}"]["i"] for i in range(8)) == list(
        range(8)
    )


def test_unresolvable_params_names_the_parameter(store: TaskStore, tools: FakeTools) -> None:
    """A missing prompt argument pauses with unresolvableParams naming the step's parameter."""
    workflow = pipeline()
    run = WorkflowEngine(workflow, store, tools).start(OWNER, {})
    assert run.pause_reason == {
        "type": "unresolvableParams",
        "blockedStep": "fetch",
        "suggestedTool": "fetch_data",
        "param": "source",
    }
    assert [s.status for s in run.steps] == ["pending", "pending", "pending"]
    assert tools.calls == []
    text = reply(workflow, run)["messages"][-1]["content"]["text"]
    assert '"<prompt argument source>"' in text


def test_missing_output_field_is_unresolvable(store: TaskStore, tools: FakeTools) -> None:
    """A field absent from an earlier output pauses with unresolvableParams on that parameter."""
    workflow = pipeline(
        steps=[
            WorkflowStep("fetch", "fetch_data", {"source": prompt_arg("source")}, binding="raw"),
            WorkflowStep("transform", "transform_data", {"rows": from_step("raw", "nope.deeper")}),
        ]
    )
    run = WorkflowEngine(workflow, store, tools).start(OWNER, {"source": "sales"})
    assert run.pause_reason is not None
    assert (
        run.pause_reason["type"],
        run.pause_reason["param"],
        run.pause_reason["suggestedTool"],
    ) == ("unresolvableParams", "rows", "fetch_data")
    assert [s.status for s in run.steps] == ["completed", "pending"]


def test_schema_mismatch_lists_missing_fields(store: TaskStore, tools: FakeTools) -> None:
    """Required input fields the step does not supply pause with schemaMismatch."""
    workflow = SequentialWorkflow("w", "d", [WorkflowStep("two", "needs_two", {"a": const(1)})])
    run = WorkflowEngine(workflow, store, tools).start(OWNER, {})
    assert run.pause_reason == {
        "type": "schemaMismatch",
        "blockedStep": "two",
        "suggestedTool": "needs_two",
        "missingFields": ["b"],
    }


def test_resume_from_stored_progress(
    engine: WorkflowEngine, store: TaskStore, tools: FakeTools
) -> None:
    """Re-invoking with the task id resumes: completed steps are not re-run."""
    run = engine.start(OWNER, {"source": "nowhere"})
    resumed = engine.resume(OWNER, run.task_id, {"source": "sales"})
    assert resumed.task_id == run.task_id
    assert resumed.status is TaskStatus.COMPLETED
    assert [c[0] for c in tools.calls] == [
        "fetch_data",
        "fetch_data",
        "transform_data",
        "store_data",
    ]
    again = engine.resume(OWNER, run.task_id)
    assert again.status is TaskStatus.COMPLETED and len(tools.calls) == 4
    assert "already" not in reply(engine.workflow, again)["messages"][-1]["content"]["text"]


def test_plain_workflow_is_a_plain_prompt(tools: FakeTools) -> None:
    """Without task backing the reply has messages only: no task, no _meta."""
    workflow = pipeline(task_backed=False)
    result = plain_prompt_reply(workflow, {"source": "sales"})
    assert set(result) == {"description", "messages"}
    assert 'fetch_data {"source": "sales"}' in result["messages"][-1]["content"]["text"]
    assert tools.calls == []


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        ([WorkflowStep("a", "missing_tool")], "unknown tool"),
        ([WorkflowStep("a", "text_only"), WorkflowStep("a", "text_only")], "duplicate step"),
        (
            [
                WorkflowStep("a", "text_only", {"x": from_step("later")}),
                WorkflowStep("b", "text_only", binding="later"),
            ],
            "before any earlier step",
        ),
        ([WorkflowStep("a", "text_only", {"x": prompt_arg("undeclared")})], "undeclared"),
        ([WorkflowStep("a", "text_only", guidance="use {nope}")], "unknown placeholder"),
        (
            [
                WorkflowStep("a", "text_only", binding="x"),
                WorkflowStep("b", "text_only", binding="x"),
            ],
            "produced twice",
        ),
        ([], "no steps"),
    ],
)
def test_definition_errors_at_registration(
    steps: list[WorkflowStep], problem: str, tools: FakeTools
) -> None:
    """Inconsistent definitions raise WorkflowDefinitionError from validate()."""
    workflow = SequentialWorkflow("bad", "d", steps, [PromptArgument("source")])
    exists: Callable[[str], bool] = lambda name: name in tools.schemas  # noqa: E731
    with pytest.raises(WorkflowDefinitionError) as info:
        workflow.validate(exists)
    assert problem in str(info.value)


def test_guidance_rendering_keeps_unknown_placeholders() -> None:
    """Guidance substitutes known arguments and leaves unknown braces readable."""
    from taskstore.workflow.handoff import render_guidance

    assert (
        render_guidance("Fetch {source} into {dest}", {"source": "sales"})
        == "Fetch sales into {dest}"
    )
    assert render_guidance("broken {", {}) == "broken {"
