"""MCP 2026-07-28 (DESIGN §9c "Modern core"): admission of a stateless request, its dispatch
table, and the envelope of its results.

Admission runs in the order the conformance suite pins down: the ``params._meta`` envelope
(-32602), the ``MCP-Protocol-Version`` header against it (-32020), the version (-32022), the
``Mcp-Method`` and ``Mcp-Name`` headers (-32020); only then is the method looked up (-32601).
Capabilities count for the request that declares them, never for later ones. Every result
carries ``resultType`` and the server's identity in ``_meta``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

from taskstore.aliases import JsonDict
from taskstore.errors import (
    INVALID_PARAMS,
    HeaderMismatchError,
    InputRequired,
    MissingCapabilityError,
    ProtocolError,
    UnsupportedVersionError,
)
from taskstore.input_requests import check_response
from taskstore.mcp.context import InputRound, ToolContext
from taskstore.mcp.modern_tasks import ExtensionTaskRouter, declares_tasks, require_tasks
from taskstore.mcp.mrtr import RequestStateCodec
from taskstore.mcp.projections.modern import complete
from taskstore.mcp.prompts import PromptRegistry
from taskstore.mcp.request import RequestContext
from taskstore.mcp.runner import ToolAnswer, ToolCall, ToolRunner
from taskstore.mcp.tools import ToolRegistry, missing_capabilities
from taskstore.types import (
    META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION,
    META_SERVER_INFO,
    MODERN_PROTOCOL_VERSION,
    TASKS_EXTENSION,
    DiscoverResult,
    InputRequiredResult,
    to_builtins,
)

__all__ = ["SUPPORTED_VERSIONS", "ModernService"]

#: The revisions served statelessly (``server/discover``'s ``supportedVersions``).
SUPPORTED_VERSIONS = [MODERN_PROTOCOL_VERSION]

_Method = Callable[[Mapping[str, Any] | None, RequestContext], JsonDict]
# Methods whose Mcp-Name header must equal a body field: the field, and whether the header is
# required (a real client omits it on tasks/*, which the server tolerates).
_NAMED = {
    "tools/call": ("name", True),
    "prompts/get": ("name", True),
    "tasks/get": ("taskId", False),
    "tasks/update": ("taskId", False),
    "tasks/cancel": ("taskId", False),
}
_BASE64_PREFIX, _BASE64_SUFFIX = "=?base64?", "?="


def _invalid(message: str) -> ProtocolError:
    return ProtocolError(INVALID_PARAMS, f"Invalid params: {message}")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A routing header's value, trimmed, its ``=?base64?…?=`` form decoded."""
    raw = headers.get(name)
    if raw is None:
        return None
    value = raw.strip()
    if value.startswith(_BASE64_PREFIX) and value.endswith(_BASE64_SUFFIX):
        encoded = value[len(_BASE64_PREFIX) : -len(_BASE64_SUFFIX)]
        try:
            return base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise HeaderMismatchError(f"{name} is not valid base64") from None
    return value


class ModernService:
    """The MCP 2026-07-28 era of one server. Thread-safe.

    :param tools: the server's tools.
    :param prompts: the server's prompts.
    :param runner: runs tool calls.
    :param render_prompt: ``prompts/get`` as the server answers it (era-neutral part).
    :param observe_call: called with every answered ``tools/call`` (the server's hooks).
    :param server_info: ``{"name", "version"}`` for every result's ``_meta``.
    :param instructions: ``server/discover``'s optional instructions.
    :param state_codec: signs ``requestState`` of multi-round calls.
    :param task_router: the tasks extension's ``tasks/*``.
    :param cache_ttl_ms: the ``ttlMs`` caching hint of ``server/discover`` and the lists.
    """

    def __init__(
        self,
        *,
        tools: ToolRegistry,
        prompts: PromptRegistry,
        runner: ToolRunner,
        render_prompt: _Method,
        observe_call: Callable[[Mapping[str, Any], ToolAnswer, RequestContext], None],
        server_info: Mapping[str, str],
        instructions: str | None,
        state_codec: RequestStateCodec,
        task_router: ExtensionTaskRouter,
        cache_ttl_ms: int = 0,
    ) -> None:
        self.tools = tools
        self.prompts = prompts
        self.runner = runner
        self.render_prompt = render_prompt
        self.observe_call = observe_call
        self.server_info = dict(server_info)
        self.instructions = instructions
        self.state_codec = state_codec
        self.cache_ttl_ms = cache_ttl_ms
        #: The dispatch table (method → handler); every other method is -32601.
        self.methods: dict[str, _Method] = {
            "server/discover": self._discover,
            "tools/list": self._list_tools,
            "tools/call": self._call_tool,
            "prompts/list": self._list_prompts,
            "prompts/get": render_prompt,
            **task_router.methods,
        }

    # -- admission and envelope ----------------------------------------------------------

    def admit(
        self, method: str, params: Mapping[str, Any] | None, ctx: RequestContext
    ) -> RequestContext:
        """Check a request's envelope and routing headers; return its context with the
        request's client capabilities.

        :raises ProtocolError: -32602 malformed ``_meta``.
        :raises HeaderMismatchError: a routing header missing or disagreeing with the body.
        :raises UnsupportedVersionError: a version this server does not serve.
        """
        meta = params.get("_meta") if params is not None else None
        # Decoded JSON objects are dicts: naming dict first spares them the Mapping ABC's check.
        if not isinstance(meta, (dict, Mapping)):
            raise _invalid("params._meta with the protocol version and capabilities is required")
        version = meta.get(META_PROTOCOL_VERSION)
        if not isinstance(version, str):
            raise _invalid(f"_meta[{META_PROTOCOL_VERSION!r}] must be a string")
        capabilities = meta.get(META_CLIENT_CAPABILITIES)
        if not isinstance(capabilities, (dict, Mapping)):
            raise _invalid(f"_meta[{META_CLIENT_CAPABILITIES!r}] must be an object")
        headers = ctx.headers
        if headers is not None:
            header_version = _header(headers, "mcp-protocol-version")
            if header_version != version:
                raise HeaderMismatchError(
                    f"MCP-Protocol-Version header {header_version!r} does not match the "
                    f"request's protocol version {version!r}"
                )
        if version not in SUPPORTED_VERSIONS:
            raise UnsupportedVersionError(version, SUPPORTED_VERSIONS)
        if headers is not None:
            self._check_routing(method, params or {}, headers)
        # The decoded request is this request's own: its capabilities need no copy.
        return ctx.with_capabilities(
            capabilities if isinstance(capabilities, dict) else dict(capabilities)
        )

    @staticmethod
    def _check_routing(method: str, params: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        header_method = _header(headers, "mcp-method")
        if header_method != method:
            raise HeaderMismatchError(
                f"Mcp-Method header {header_method!r} does not match the method {method!r}"
            )
        named = _NAMED.get(method)
        if named is None:
            return
        field, required = named
        header_name = _header(headers, "mcp-name")
        if header_name is None and not required:
            return
        body = params.get(field)
        if header_name is None or header_name != (body if isinstance(body, str) else None):
            raise HeaderMismatchError(
                f"Mcp-Name header {header_name!r} does not match params.{field} {body!r}"
            )

    def finish(self, result: JsonDict) -> JsonDict:
        """The result with ``resultType`` (``complete`` unless set) and the server's identity
        in ``_meta`` (a result's own ``_meta`` keys win)."""
        meta = result.get("_meta")
        merged = {META_SERVER_INFO: self.server_info, **(meta if isinstance(meta, dict) else {})}
        finished = {**result, "_meta": merged}
        finished.setdefault("resultType", "complete")
        return finished

    # -- methods -------------------------------------------------------------------------

    def _discover(self, params: Mapping[str, Any] | None, ctx: RequestContext) -> JsonDict:
        result: JsonDict = to_builtins(
            DiscoverResult(
                supported_versions=list(SUPPORTED_VERSIONS),
                capabilities={"tools": {}, "prompts": {}, "extensions": {TASKS_EXTENSION: {}}},
                ttl_ms=self.cache_ttl_ms,
                cache_scope="public",
                instructions=self.instructions,
            )
        )
        return result

    def _list_tools(self, params: Mapping[str, Any] | None, ctx: RequestContext) -> JsonDict:
        return complete(
            {
                "tools": self.tools.declarations(execution=False),
                "ttlMs": self.cache_ttl_ms,
                "cacheScope": "public",
            }
        )

    def _list_prompts(self, params: Mapping[str, Any] | None, ctx: RequestContext) -> JsonDict:
        return complete(
            {
                "prompts": self.prompts.declarations(),
                "ttlMs": self.cache_ttl_ms,
                "cacheScope": "public",
            }
        )

    def _call_tool(self, params: Mapping[str, Any] | None, ctx: RequestContext) -> JsonDict:
        """``tools/call``: a task when the tool may run as one and the request declares the
        tasks extension (the legacy ``task`` param is ignored), else inline; input the call
        needs first comes through SEP-2322 rounds."""
        call = self.runner.parse_call(params)
        spec = call.spec
        missing = missing_capabilities(spec.required_capabilities, ctx.client_capabilities)
        if missing:
            raise MissingCapabilityError(missing)
        as_task = spec.task_support != "forbidden" and declares_tasks(ctx)
        if spec.task_support == "required" and not as_task:
            require_tasks(ctx)
        call_digest = self.state_codec.call_digest("tools/call", spec.name, call.arguments)
        caller_digest = self.state_codec.caller_digest(ctx.caller.owner)
        answers = self._answers(call.params, call_digest, caller_digest)
        round_ = InputRound(answers=answers, capabilities=ctx.client_capabilities or {})
        try:
            if as_task:
                answer = self._start_task(call, ctx, round_)
            else:
                answer = ToolAnswer(self.runner.run_call(call, ctx, input_round=round_))
        except InputRequired as needed:
            pending = {
                key: str(request.get("method")) for key, request in needed.requests.items()
            }
            state = self.state_codec.seal(call_digest, caller_digest, answers, pending)
            asked: JsonDict = to_builtins(
                InputRequiredResult(input_requests=needed.requests, request_state=state)
            )
            return asked
        self.observe_call(call.params, answer, ctx)
        return answer.result

    def _start_task(self, call: ToolCall, ctx: RequestContext, round_: InputRound) -> ToolAnswer:
        """Create the call's task once the input it needs first is answered (SEP-2663 with
        SEP-2322: the rounds come before the task, and their keys end with it)."""
        needed = {
            key: request
            for key, request in (call.spec.pre_task_input or {}).items()
            if key not in round_.answers
        }
        if needed:
            for request in needed.values():
                ToolContext.check_capability(round_, request)
            raise InputRequired(needed)
        return self.runner.start_call(call, ctx, input_round=round_)

    def _answers(
        self, params: Mapping[str, Any], call_digest: str, caller_digest: str
    ) -> dict[str, Any]:
        """Every answer a retry brings: those sealed in its ``requestState`` plus its
        ``inputResponses`` to the keys the last round asked (others are ignored)."""
        token = params.get("requestState")
        if token is None:
            return {}
        state = self.state_codec.open(token, call_digest, caller_digest)
        responses = params.get("inputResponses")
        if responses is not None and not isinstance(responses, Mapping):
            raise _invalid("inputResponses must be an object")
        answers = dict(state.answers)
        for key, method in state.pending.items():
            if responses is not None and key in responses:
                check_response(method, responses[key])
                answers[key] = responses[key]
        return answers
