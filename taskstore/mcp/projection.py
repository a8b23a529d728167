"""Compatibility module: the projections moved to :mod:`taskstore.mcp.projections`."""

from __future__ import annotations

from taskstore.errors import OutcomeError
from taskstore.mcp.projections import LEGACY, LegacyProjection, Projection

__all__ = ["LEGACY", "LegacyProjection", "OutcomeError", "Projection"]
