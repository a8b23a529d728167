"""Who may call the endpoint: authenticators, and the ``Host``/``Origin`` rules that protect a
loopback server from DNS rebinding."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from taskstore.errors import AuthenticationError
from taskstore.mcp.auth import AuthContext

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = [
    "AuthenticationError",
    "Authenticator",
    "OriginPolicy",
    "bearer_authenticator",
    "is_loopback_host",
]


class Authenticator(Protocol):
    """Identifies the caller of one HTTP request.

    Return an :class:`AuthContext` for an authenticated request, ``None`` for an anonymous
    one (allowed unless the app sets ``require_auth``), or raise
    :class:`~taskstore.errors.AuthenticationError` to refuse it with 401.
    """

    def __call__(self, environ: WSGIEnvironment) -> AuthContext | None:
        """Authenticate the request described by ``environ``."""
        ...


def bearer_authenticator(
    tokens: Mapping[str, str | AuthContext], *, required: bool = True
) -> Authenticator:
    """An authenticator for static bearer tokens (``Authorization: Bearer <token>``).

    :param tokens: token → subject (or a full :class:`AuthContext`).
    :param required: refuse requests without a token (else they are anonymous).
    """
    contexts = {
        token: value if isinstance(value, AuthContext) else AuthContext(subject=value)
        for token, value in tokens.items()
    }

    def authenticate(environ: WSGIEnvironment) -> AuthContext | None:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        if not header:
            if required:
                raise AuthenticationError("A bearer token is required")
            return None
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("Malformed Authorization header")
        presented = token.strip().encode("utf-8", "surrogateescape")
        found = None
        # Compare against every token in constant time: no early exit that would time-leak.
        for known, context in contexts.items():
            if hmac.compare_digest(presented, known.encode("utf-8")):
                found = context
        if found is None:
            raise AuthenticationError("Invalid bearer token")
        return found

    return authenticate


def is_loopback_host(host: str) -> bool:
    """``True`` for ``localhost``, ``127.0.0.0/8`` and ``::1`` (with or without brackets)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_of(value: str) -> str:
    """The host part of a ``Host`` header value (``name``, ``name:port``, ``[v6]:port``)."""
    value = value.strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


#: Distinct (Host, Origin) verdicts an :class:`OriginPolicy` remembers, and the longest pair
#: it remembers (longer ones, which no real client sends, are judged every time).
_REMEMBERED_VERDICTS = 256
_REMEMBERED_CHARS = 512


class OriginPolicy:
    """The ``Host``/``Origin`` checks of one endpoint.

    :param loopback_only: the server is bound to loopback: only loopback ``Host`` and
        ``Origin`` headers are accepted (DNS-rebinding protection).
    :param allowed_origins: further ``Origin`` values to accept (e.g. a web client's).
    """

    def __init__(self, *, loopback_only: bool, allowed_origins: Iterable[str] = ()) -> None:
        self._loopback_only = loopback_only
        self._allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        # Verdicts by (Host, Origin): a client sends the same pair on every request, and
        # judging it (an IP address parse, a URL split) costs more than the rest of a ping.
        self._verdicts: dict[tuple[str, str | None], str | None] = {}

    @property
    def loopback_only(self) -> bool:
        """Only loopback ``Host`` and ``Origin`` headers are accepted."""
        return self._loopback_only

    @property
    def allowed_origins(self) -> frozenset[str]:
        """The further ``Origin`` values accepted (normalized: lower case, no trailing
        slash)."""
        return self._allowed_origins

    def refusal(self, host_header: str, origin: str | None) -> str | None:
        """Why a request with these headers is refused (HTTP 403), or ``None`` if it is not.
        Any server refuses an ``Origin`` that is neither its own nor allowed."""
        key = (host_header, origin)
        try:
            return self._verdicts[key]
        except KeyError:
            pass
        verdict = self._judge(host_header, origin)
        if len(host_header) + len(origin or "") <= _REMEMBERED_CHARS:
            if len(self._verdicts) >= _REMEMBERED_VERDICTS:
                self._verdicts.clear()  # bounded: a flood of made-up hosts only resets it
            self._verdicts[key] = verdict
        return verdict

    def _judge(self, host_header: str, origin: str | None) -> str | None:
        if self.loopback_only and not is_loopback_host(_host_of(host_header)):
            return "Forbidden: Host must be a loopback name"
        if origin is None:
            return None
        normalized = origin.strip().rstrip("/").lower()
        if normalized in self.allowed_origins:
            return None
        parts = urlsplit(normalized)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "Forbidden: invalid Origin"
        if self.loopback_only:
            if is_loopback_host(parts.hostname):
                return None
            return "Forbidden: Origin must be a loopback origin"
        if parts.netloc == host_header.strip().lower():
            return None  # same origin
        return "Forbidden: Origin not allowed"
