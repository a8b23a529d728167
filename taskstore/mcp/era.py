"""Which protocol era a request belongs to, decided once per request (DESIGN §9c).

The transport asks :func:`era_of` before anything else (before sessions), puts the answer in
the request's :class:`~taskstore.mcp.request.RequestContext`, and everything below takes the
era's projection and dispatch table from there: nothing below this seam asks "which era?".

Today one era is served: MCP 2025-11-25 (``initialize`` and sessions). A later era is one more
:class:`Era` value (its projection, its dispatch table in the server) and one more rule here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskstore.mcp.projections import LEGACY, Projection

__all__ = ["ERA_2025_11_25", "Era", "era_of"]


@dataclass(frozen=True)
class Era:
    """One protocol era.

    :ivar name: the era's protocol revision (its newest one).
    :ivar projection: how task records look on its wire.
    :ivar sessions: whether requests belong to an ``initialize``-created session.
    """

    name: str
    projection: Projection
    sessions: bool


#: MCP 2025-11-25 and the earlier revisions its clients negotiate: sessions, ``tasks`` utility.
ERA_2025_11_25 = Era(name="2025-11-25", projection=LEGACY, sessions=True)


def era_of(message: Mapping[str, Any]) -> Era:
    """The era of one decoded JSON-RPC message (any shape; malformed messages are the era's
    own business to reject)."""
    return ERA_2025_11_25
