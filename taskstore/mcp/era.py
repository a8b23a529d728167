"""Which protocol era a request belongs to, decided once per request (DESIGN §9c).

The transport asks :func:`era_of` before anything else (before sessions), puts the answer in
the request's :class:`~taskstore.mcp.request.RequestContext`, and everything below takes the
era's projection and dispatch table from there: nothing below this seam asks "which era?".

Two eras are served at one endpoint:

- MCP 2025-11-25 (and the older revisions its clients negotiate): ``initialize``, then requests
  in an ``Mcp-Session-Id`` session; errors travel with HTTP 200.
- MCP 2026-07-28: stateless; every request carries its protocol version and client
  capabilities in ``params._meta``; errors of the request envelope are HTTP 400 (404 for an
  unknown method).

A request is 2026-07-28 when its ``params._meta`` holds any per-request key of that revision,
when its ``MCP-Protocol-Version`` header names a revision that is not a 2025-era one, or when it
calls ``server/discover`` (a malformed modern request must get the modern error, not a legacy
"no session" one). Everything else is 2025-11-25.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from taskstore.errors import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_CAPABILITY,
    PARSE_ERROR,
    UNSUPPORTED_VERSION,
)
from taskstore.mcp.capabilities import SUPPORTED_PROTOCOL_VERSIONS
from taskstore.mcp.projections import LEGACY, MODERN, Projection
from taskstore.types import (
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_PROTOCOL_VERSION,
)

__all__ = ["ERA_2025_11_25", "ERA_2026_07_28", "Era", "era_of"]


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    # Decoded JSON objects are dicts: naming dict first settles them at once, where the
    # Mapping ABC's check alone costs several times more (and runs a few times per request).
    return isinstance(value, (dict, Mapping))


@dataclass(frozen=True)
class Era:
    """One protocol era.

    :ivar name: the era's protocol revision (its newest one).
    :ivar projection: how task records look on its wire.
    :ivar sessions: whether requests belong to an ``initialize``-created session.
    :ivar error_statuses: the HTTP status of an error reply, by JSON-RPC code (others: 200).
    """

    name: str
    projection: Projection
    sessions: bool
    error_statuses: Mapping[int, int] = field(default_factory=dict, hash=False, compare=False)

    def http_status(self, reply: Mapping[str, Any]) -> int:
        """The HTTP status of a reply message in this era."""
        if not self.error_statuses:
            return 200
        error = reply.get("error")
        if not _is_mapping(error):
            return 200
        code = error.get("code")
        return self.error_statuses.get(code, 200) if isinstance(code, int) else 200


#: MCP 2025-11-25 and the earlier revisions its clients negotiate: sessions, ``tasks`` utility;
#: JSON-RPC errors travel with HTTP 200 (official 1.x clients read a non-2xx as a transport
#: failure and lose the code).
ERA_2025_11_25 = Era(name="2025-11-25", projection=LEGACY, sessions=True)

#: MCP 2026-07-28: stateless requests, ``server/discover``, the tasks extension (SEP-2663).
ERA_2026_07_28 = Era(
    name="2026-07-28",
    projection=MODERN,
    sessions=False,
    error_statuses={
        PARSE_ERROR: 400,
        INVALID_REQUEST: 400,
        INVALID_PARAMS: 400,
        HEADER_MISMATCH: 400,
        MISSING_CAPABILITY: 400,
        UNSUPPORTED_VERSION: 400,
        METHOD_NOT_FOUND: 404,
    },
)


def era_of(message: object, protocol_header: str | None = None) -> Era:
    """The era of one decoded JSON-RPC message (any shape; malformed messages are their
    era's own business to reject).

    :param protocol_header: the request's ``MCP-Protocol-Version`` header, if the transport
        has headers.
    """
    if _is_mapping(message):
        if message.get("method") == "server/discover":
            return ERA_2026_07_28
        params = message.get("params")
        meta = params.get("_meta") if _is_mapping(params) else None
        if _is_mapping(meta) and (
            META_PROTOCOL_VERSION in meta
            or META_CLIENT_CAPABILITIES in meta
            or META_CLIENT_INFO in meta
        ):
            return ERA_2026_07_28
    if protocol_header is not None:
        version = protocol_header.strip()
        if version and version not in SUPPORTED_PROTOCOL_VERSIONS:
            return ERA_2026_07_28
    return ERA_2025_11_25
