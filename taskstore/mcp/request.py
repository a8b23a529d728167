"""``RequestContext``: one request as every handler below the transport sees it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskstore.aliases import RequestId
from taskstore.mcp.auth import Caller
from taskstore.mcp.era import ERA_2025_11_25, Era
from taskstore.mcp.notifications import NotificationSender
from taskstore.mcp.projections import Projection

__all__ = ["RequestContext", "as_context"]


@dataclass(frozen=True)
class RequestContext:
    """One request: who calls, which era, where out-of-band messages go. Built once per
    request by the transport (the caller resolved once) and handed down unchanged.

    :ivar caller: who is calling (the task owner).
    :ivar request_id: the JSON-RPC id (``None`` for notifications).
    :ivar sender: where out-of-band messages for this caller go (progress, ...), if anywhere.
    :ivar era: the request's protocol era (:func:`taskstore.mcp.era.era_of`).
    :ivar headers: the transport's request headers with lower-case names (``None`` for a
        transport without headers, which skips the header rules of MCP 2026-07-28).
    :ivar client_capabilities: the capabilities the client declared for this request (MCP
        2026-07-28: from ``params._meta``; ``None`` when the era declares them per session).
    """

    caller: Caller
    request_id: RequestId | None = None
    sender: NotificationSender | None = None
    era: Era = ERA_2025_11_25
    headers: Mapping[str, str] | None = field(default=None, hash=False, compare=False)
    client_capabilities: Mapping[str, Any] | None = field(
        default=None, hash=False, compare=False
    )

    @property
    def projection(self) -> Projection:
        """The era's wire projection."""
        return self.era.projection

    def with_request_id(self, request_id: RequestId | None) -> RequestContext:
        """This context for the request with JSON-RPC id ``request_id``."""
        return self._evolved("request_id", request_id)

    def with_capabilities(self, capabilities: Mapping[str, Any] | None) -> RequestContext:
        """This context with the client capabilities its request declared."""
        return self._evolved("client_capabilities", capabilities)

    def _evolved(self, name: str, value: object) -> RequestContext:
        # dataclasses.replace, without its per-call walk over the fields (every request makes
        # one or two of these): the copy takes every field, new ones included, and the class
        # defines no __post_init__ or slots that this would skip.
        clone = object.__new__(type(self))
        fields = clone.__dict__
        fields.update(self.__dict__)
        fields[name] = value
        return clone


def as_context(caller_or_ctx: Caller | RequestContext) -> RequestContext:
    """A context for APIs that also accept a bare :class:`Caller` (a 2025-11-25 request)."""
    if isinstance(caller_or_ctx, RequestContext):
        return caller_or_ctx
    return RequestContext(caller=caller_or_ctx)
