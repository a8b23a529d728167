"""The task-prompt bridge (DESIGN §9b): workflow prompts that run what they can, hand off the
rest, and resume.

>>> from taskstore.workflow import SequentialWorkflow, WorkflowStep, PromptArgument
>>> from taskstore.workflow import prompt_arg, from_step
>>> pipeline = SequentialWorkflow(
...     "data_pipeline", "Fetch, transform and store data",
...     arguments=[PromptArgument("source", "where the data comes from", required=True)],
...     steps=[
...         WorkflowStep("fetch", "fetch_data", {"source": prompt_arg("source")},
...                      binding="raw_data"),
...         WorkflowStep("transform", "transform_data", {"rows": from_step("raw_data", "rows")},
...                      binding="clean"),
...         WorkflowStep("store", "store_data", {"rows": from_step("clean", "rows")}),
...     ],
... )
>>> [step.name for step in pipeline.steps]
['fetch', 'transform', 'store']
"""

from taskstore.mcp.prompts import PromptArgument
from taskstore.workflow.bridge import WorkflowPromptSpec, register_workflow
from taskstore.workflow.continuation import record_continuation
from taskstore.workflow.definition import (
    Const,
    PromptArg,
    SequentialWorkflow,
    StepOutput,
    WorkflowDefinitionError,
    WorkflowStep,
    const,
    from_step,
    prompt_arg,
)
from taskstore.workflow.engine import ToolInvoker, WorkflowEngine, WorkflowRun
from taskstore.workflow.handoff import TASK_ID_META, plain_prompt_reply, remaining_calls, reply

__all__ = [
    "TASK_ID_META",
    "Const",
    "PromptArg",
    "PromptArgument",
    "SequentialWorkflow",
    "StepOutput",
    "ToolInvoker",
    "WorkflowDefinitionError",
    "WorkflowEngine",
    "WorkflowPromptSpec",
    "WorkflowRun",
    "WorkflowStep",
    "const",
    "from_step",
    "plain_prompt_reply",
    "prompt_arg",
    "record_continuation",
    "register_workflow",
    "remaining_calls",
    "reply",
]
