"""Owner resolution and the security policy (DESIGN §5).

Every task belongs to an *owner*, an arbitrary string. :func:`resolve_owner` picks it from the
request's identity: the authenticated subject, else the OAuth client id, else the session id,
else the anonymous owner ``"local"``.
"""

from __future__ import annotations

import msgspec

from taskstore.errors import ConfigurationError

__all__ = [
    "ANONYMOUS_OWNER",
    "DEFAULT_MAX_TASKS_PER_OWNER",
    "SecurityConfig",
    "is_anonymous",
    "resolve_owner",
]

#: The owner of requests that carry no identity at all.
ANONYMOUS_OWNER = "local"

#: Default quota of live tasks per owner. Live tasks are about creation rate × TTL (finished
#: tasks count until they expire): a client creating 300 tasks a second with a 60 s TTL holds
#: about 18,000, and this leaves it room for more than 800 a second. The quota bounds one
#: owner's footprint: a task with a small result takes about 1 KB on the memory backend and
#: 1.6 KB on Redis, so about 50 MB and 80 MB at the quota (results and variables may be up to
#: 1 MiB each, which the quota multiplies).
DEFAULT_MAX_TASKS_PER_OWNER = 50_000


class SecurityConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Security policy of a :class:`~taskstore.TaskStore`.

    :ivar max_tasks_per_owner: live (unexpired) tasks one owner may hold, finished ones
        included, enforced atomically on every backend (default
        :data:`DEFAULT_MAX_TASKS_PER_OWNER`, 50,000; see there for what it costs); a create
        beyond it raises :class:`~taskstore.errors.QuotaExceededError` (-32010). ``None``
        disables the quota.
    :ivar allow_anonymous: let the anonymous owner (``""`` or ``"local"``) create tasks. Off by
        default: anonymous tasks are shared by every anonymous caller.
    """

    max_tasks_per_owner: int | None = DEFAULT_MAX_TASKS_PER_OWNER
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
