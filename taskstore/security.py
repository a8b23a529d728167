"""Owner resolution and the security policy (DESIGN §5).

Every task belongs to an *owner*, an arbitrary string. :func:`resolve_owner` picks it from the
request's identity: the authenticated subject, else the OAuth client id, else the session id,
else the anonymous owner ``"local"``.
"""

from __future__ import annotations

import msgspec

from taskstore.errors import ConfigurationError

__all__ = ["ANONYMOUS_OWNER", "SecurityConfig", "is_anonymous", "resolve_owner"]

#: The owner of requests that carry no identity at all.
ANONYMOUS_OWNER = "local"


class SecurityConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Security policy of a :class:`~taskstore.TaskStore`.

    :ivar max_tasks_per_owner: live (unexpired) tasks one owner may hold; enforced atomically
        on every backend. ``None`` disables the quota.
    :ivar allow_anonymous: let the anonymous owner (``""`` or ``"local"``) create tasks. Off by
        default: anonymous tasks are shared by every anonymous caller.
    """

    max_tasks_per_owner: int | None = 100
    allow_anonymous: bool = False

    def __post_init__(self) -> None:
        if self.max_tasks_per_owner is not None and (
            isinstance(self.max_tasks_per_owner, bool)
            or not isinstance(self.max_tasks_per_owner, int)
            or self.max_tasks_per_owner < 1
        ):
            raise ConfigurationError("max_tasks_per_owner must be a positive integer or None")


def resolve_owner(
    subject: str | None = None, client_id: str | None = None, session_id: str | None = None
) -> str:
    """Return the first non-empty of ``subject``, ``client_id``, ``session_id``, else
    :data:`ANONYMOUS_OWNER`."""
    for candidate in (subject, client_id, session_id):
        if candidate:
            return candidate
    return ANONYMOUS_OWNER


def is_anonymous(owner: str) -> bool:
    """``True`` for the anonymous owner (``""`` or ``"local"``)."""
    return owner in ("", ANONYMOUS_OWNER)
