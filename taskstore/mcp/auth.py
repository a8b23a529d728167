"""Who is calling: :class:`AuthContext` (what authentication established) and :class:`Caller`
(the resolved task owner for one request).

The owner comes from :func:`taskstore.security.resolve_owner`: the authenticated subject, else
the OAuth client id, else the session id, else the anonymous owner ``"local"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskstore.mcp.audit import owner_label
from taskstore.security import is_anonymous, resolve_owner

__all__ = ["AuthContext", "Caller"]


@dataclass(frozen=True)
class AuthContext:
    """What an authenticator established about a request.

    :ivar subject: the authenticated principal (user); becomes the task owner.
    :ivar client_id: the OAuth client id; the owner when there is no subject.
    :ivar scopes: granted scopes, for the application's own checks.
    :ivar claims: any further claims (token introspection output, ...).
    """

    subject: str | None = None
    client_id: str | None = None
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Caller:
    """The identity one request acts as.

    :ivar owner: the task owner every store call of the request is scoped to.
    :ivar session_id: the transport session, if any.
    :ivar auth: the authentication result, if any.
    """

    owner: str
    session_id: str | None = None
    auth: AuthContext | None = None

    @classmethod
    def resolve(cls, *, auth: AuthContext | None = None, session_id: str | None = None) -> Caller:
        """Resolve the owner of a request (DESIGN §5 ``resolve_owner``)."""
        owner = resolve_owner(
            auth.subject if auth is not None else None,
            auth.client_id if auth is not None else None,
            session_id,
        )
        return cls(owner=owner, session_id=session_id, auth=auth)

    @property
    def identified(self) -> bool:
        """``False`` when the caller is the shared anonymous owner (no identity at all)."""
        return not is_anonymous(self.owner)

    @property
    def audit_owner(self) -> str:
        """The owner as audit lines show it (session ids only as a fingerprint)."""
        by_session = self.session_id is not None and self.owner == self.session_id
        return owner_label(self.owner, is_session=by_session)
