"""A request's header section for the bundled server, parsed without the ``email`` package
when it is plain.

``http.server`` hands every header section to ``email.parser`` (through
``http.client.parse_headers``): general, and about a third of the server's time per request
on a small JSON-RPC POST. :func:`read_headers` reads the lines with the same limits as
``http.client`` (each line at most 65,536 bytes, at most 100 lines) and, when every line is a
plain ``name: value`` (an RFC 9110 token before the colon, no folding, no stray line ending),
parses them itself into :class:`Headers`, which answers what the handler and ``wsgiref`` ask
of a header object. Anything else (folded lines, a name with spaces, a section cut short) goes
to ``email.parser`` as before, so odd input is judged exactly as ``http.server`` judges it.
"""

from __future__ import annotations

import email.parser
import http.client
import re
from collections.abc import Iterator
from typing import Protocol

__all__ = ["Headers", "read_headers"]

# http.client's own limits (its _MAXLINE and _MAXHEADERS), kept the same so that a request is
# refused (431) at the same point whichever parser reads it.
_MAX_LINE = 65536
_MAX_HEADERS = 100
# One plain header line: a token, a colon, a value without CR or LF, the line ending.
_PLAIN = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\r\n]*)\r?\n")


class _Lines(Protocol):
    def readline(self, size: int | None = -1, /) -> bytes: ...


class Headers:
    """A parsed header section: the part of ``email.message.Message``'s interface that
    ``http.server`` and ``wsgiref`` use. Names are matched case-insensitively; :meth:`get` gives
    the first value of a repeated header, :meth:`get_all` every one in order."""

    __slots__ = ("_first", "_items")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        first: dict[str, str] = {}
        for name, value in items:
            first.setdefault(name.lower(), value)
        self._first = first

    def get(self, name: str, failobj: str | None = None) -> str | None:
        """The first value of header ``name``, else ``failobj``."""
        return self._first.get(name.lower(), failobj)

    def __getitem__(self, name: str) -> str | None:
        return self._first.get(name.lower())  # email's Message answers None, not KeyError

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def get_all(self, name: str, failobj: object = None) -> list[str] | object:
        """Every value of header ``name`` in order, else ``failobj``."""
        lowered = name.lower()
        found = [value for key, value in self._items if key.lower() == lowered]
        return found or failobj

    def get_content_type(self) -> str:
        """``email``'s reading of ``Content-Type``: its ``type/subtype`` in lower case, or
        ``text/plain`` when it is missing or malformed."""
        value = self._first.get("content-type")
        if value is None:
            return "text/plain"
        ctype = value.split(";", 1)[0].strip().lower()
        return ctype if ctype.count("/") == 1 else "text/plain"

    def items(self) -> list[tuple[str, str]]:
        """``(name, value)`` pairs in the order received, names as sent."""
        return list(self._items)

    def keys(self) -> list[str]:
        return [name for name, _ in self._items]

    def values(self) -> list[str]:
        return [value for _, value in self._items]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)


def read_headers(rfile: _Lines) -> Headers | http.client.HTTPMessage:
    """Read a request's header section, up to and including its empty line.

    :returns: :class:`Headers` for a plain section, else what ``http.client.parse_headers``
        returns for it.
    :raises http.client.LineTooLong: a line over 65,536 bytes (and whatever ``rfile`` raises
        for a section over its own budget).
    :raises http.client.HTTPException: more than 100 lines.
    """
    lines: list[bytes] = []
    plain: list[tuple[str, str]] | None = []
    while True:
        line = rfile.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > _MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            plain = None  # cut short: email's reading of it stands
            break
        if plain is not None:
            match = _PLAIN.fullmatch(line)
            if match is None:
                plain = None
            else:
                name, value = match.groups()
                plain.append((name.decode("ascii"), value.decode("iso-8859-1")))
    if plain is not None:
        return Headers(plain)
    text = b"".join(lines).decode("iso-8859-1")
    message = email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)
    assert isinstance(message, http.client.HTTPMessage)
    return message
