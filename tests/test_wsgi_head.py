"""The bundled server's header parser (``taskstore.http._head``) reads every header section
as ``http.client.parse_headers`` (the ``email`` package) reads it, within the same limits."""

from __future__ import annotations

import http.client
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskstore.http._head import Headers, read_headers

_TOKEN = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=12,
)
_NAMES = st.one_of(
    _TOKEN,
    st.sampled_from(["Content-Type", "content-length", "CONNECTION", "Expect", "Host"]),
)
# Values: any latin-1 text without line endings, surrounded by optional blanks.
_VALUES = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=255, blacklist_characters="\r\n"),
    max_size=20,
)


def _section(lines: list[bytes], ending: bytes = b"\r\n") -> bytes:
    return b"".join(lines) + ending


def _both(raw: bytes) -> tuple[Headers | http.client.HTTPMessage, http.client.HTTPMessage]:
    return read_headers(io.BytesIO(raw)), http.client.parse_headers(io.BytesIO(raw))


def _assert_same(ours: object, theirs: http.client.HTTPMessage, names: list[str]) -> None:
    assert list(ours.items()) == list(theirs.items())  # type: ignore[attr-defined]
    assert ours.get_content_type() == theirs.get_content_type()  # type: ignore[attr-defined]
    for name in {*names, "missing", "Content-Type"}:
        for variant in (name, name.lower(), name.upper()):
            assert ours.get(variant) == theirs.get(variant)  # type: ignore[attr-defined]
            assert ours[variant] == theirs[variant]  # type: ignore[index]
            assert (variant in ours) == (variant in theirs)  # type: ignore[operator]
            assert ours.get_all(variant, ()) == theirs.get_all(variant, ())  # type: ignore[attr-defined]


@given(
    st.lists(st.tuples(_NAMES, st.sampled_from(["", " ", "\t", "  "]), _VALUES), max_size=12),
    st.sampled_from([b"\r\n", b"\n"]),
)
def test_plain_sections_read_as_email_reads_them(
    headers: list[tuple[str, str, str]], newline: bytes
) -> None:
    """Plain ``name: value`` lines (repeated names, odd case, blanks, latin-1 values) are
    parsed without ``email`` and give the same answers to every question the server asks."""
    lines = [f"{n}:{gap}{v}".encode("latin-1") + newline for n, gap, v in headers]
    raw = _section(lines, newline)
    ours, theirs = _both(raw)
    assert isinstance(ours, Headers)
    _assert_same(ours, theirs, [n for n, _, _ in headers])


@pytest.mark.parametrize(
    "raw",
    [
        b"Host: a\r\nX-Long: one\r\n two\r\n\r\n",  # folded (obsolete line folding)
        b"Host : a\r\n\r\n",  # blank before the colon
        b"Host a\r\nAccept: b\r\n\r\n",  # no colon
        b"Host: a\r\nX: b",  # cut short, no empty line
        b"From nobody\r\nHost: a\r\n\r\n",  # email's Unix-From line
        b"X: a\rb\r\n\r\n",  # a lone CR inside a value
    ],
)
def test_other_sections_are_left_to_email(raw: bytes) -> None:
    """Anything but plain lines is parsed by ``email``, exactly as ``http.server`` does."""
    ours, theirs = _both(raw)
    assert isinstance(ours, http.client.HTTPMessage)
    assert list(ours.items()) == list(theirs.items())


def test_the_limits_are_http_clients() -> None:
    """At most 100 lines and 65,536 bytes a line, refused with ``http.client``'s errors."""
    many = b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n"
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        read_headers(io.BytesIO(many))
    assert len(read_headers(io.BytesIO(many[-(99 * 8 + 2) :]))) <= 100
    long = b"X: " + b"v" * 65536 + b"\r\n\r\n"
    with pytest.raises(http.client.LineTooLong):
        read_headers(io.BytesIO(long))


def test_reading_stops_at_the_empty_line() -> None:
    """The body after the header section is left unread for the body reader."""
    stream = io.BytesIO(b"Content-Length: 2\r\n\r\n{}")
    headers = read_headers(stream)
    assert headers.get("content-length") == "2"
    assert stream.read() == b"{}"
