"""Wire projections: how stored task records look to one protocol era.

One store, several wire shapes. A :class:`~taskstore.record.TaskRecord` and its
:class:`~taskstore.record.Outcome` are era-neutral; a *projection* turns them into one era's
result objects and decides how a tool's ``isError`` result settles a task. The era of each
request (:mod:`taskstore.mcp.era`) picks the projection; the request context carries it to the
router, the runner, the notifications and the workflow bridge.

- :data:`LEGACY` (:class:`LegacyProjection`): MCP 2025-11-25 (DESIGN §3).
- :data:`MODERN` (:class:`ModernProjection`): MCP 2026-07-28 with the tasks extension
  (DESIGN §9c).
"""

from __future__ import annotations

from taskstore.mcp.projections.base import Projection
from taskstore.mcp.projections.legacy import LEGACY, LegacyProjection
from taskstore.mcp.projections.modern import MODERN, ModernProjection

__all__ = ["LEGACY", "MODERN", "LegacyProjection", "ModernProjection", "Projection"]
