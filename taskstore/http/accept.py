"""The ``Accept`` header (RFC 9110 §12.5.1), read as far as the endpoint needs it."""

from __future__ import annotations

import re

__all__ = ["Accept"]

_QVALUE = re.compile(r"(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)\Z")


class Accept:
    """The media ranges of one ``Accept`` header, and what they admit.

    Rules: ranges are comma-separated, ``type/subtype`` (or ``type/*``, ``*/*``) compared
    case-insensitively, each with optional parameters; a range that is not of that form, or
    whose ``q`` is not a valid weight (``0`` to ``1``, at most three decimals), is ignored.
    For a media type the most specific matching ranges decide (``type/subtype`` over
    ``type/*`` over ``*/*``; the highest ``q`` among equally specific ones), and it is
    admitted when their ``q`` is above zero. A missing or blank header admits everything.

    :param header: the header's value, ``None`` when the request has none.
    """

    def __init__(self, header: str | None) -> None:
        self.present = header is not None and bool(header.strip())
        #: ``(type, subtype) -> q``: the highest weight given to each range.
        self.ranges: dict[tuple[str, str], float] = {}
        for element in (header or "").split(","):
            parsed = _parse_range(element)
            if parsed is not None:
                media_range, q = parsed
                self.ranges[media_range] = max(q, self.ranges.get(media_range, 0.0))

    def quality(self, media_type: str) -> float:
        """The weight the header gives ``media_type`` (``type/subtype``): 1.0 without a header,
        0.0 when no range matches."""
        if not self.present:
            return 1.0
        kind, _, subtype = media_type.lower().partition("/")
        for media_range in ((kind, subtype), (kind, "*"), ("*", "*")):
            if media_range in self.ranges:
                return self.ranges[media_range]
        return 0.0

    def admits(self, media_type: str) -> bool:
        """Whether a response of ``media_type`` is acceptable (a weight above zero)."""
        return self.quality(media_type) > 0.0

    def names(self, media_type: str) -> bool:
        """Whether the header names ``media_type`` itself (no wildcard) with a weight above
        zero: the client asked for it, rather than tolerating anything."""
        kind, _, subtype = media_type.lower().partition("/")
        return self.ranges.get((kind, subtype), 0.0) > 0.0


def _parse_range(element: str) -> tuple[tuple[str, str], float] | None:
    """``((type, subtype), q)`` of one element of the header, ``None`` when malformed."""
    media_range, *parameters = element.split(";")
    kind, slash, subtype = media_range.strip().lower().partition("/")
    if not slash or not kind or not subtype or "/" in subtype or (kind == "*" != subtype):
        return None
    if any(char.isspace() for char in kind + subtype):
        return None
    q = 1.0
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            value = value.strip()
            if not _QVALUE.match(value):
                return None
            q = float(value)
    return (kind, subtype), q
