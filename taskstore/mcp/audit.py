"""Audit trail: one log line per task event on the ``taskstore.audit`` logger.

Events: ``task.created``, ``task.completed``, ``task.failed``, ``task.result`` (retrieved),
``task.cancelled``. Each line names the owner. Authenticated owners appear verbatim; owners that
are session ids (unauthenticated sessions own their tasks by session id) appear only as a short
fingerprint, because a session id is a bearer credential and log files are read by many.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Protocol

__all__ = ["Audited", "audit", "audit_logger", "owner_label"]

#: The audit logger. Route it to its own handler to keep an audit file.
audit_logger = logging.getLogger("taskstore.audit")

_SESSION_PREFIX = "session:"


def owner_label(owner: str, *, is_session: bool = False) -> str:
    """How ``owner`` appears in audit lines.

    :param is_session: ``owner`` is a session id rather than an authenticated identity.
    """
    if is_session:
        digest = hashlib.blake2b(owner.encode("utf-8", "surrogatepass"), digest_size=6)
        return _SESSION_PREFIX + digest.hexdigest()
    return owner


class Audited(Protocol):
    """Anything that knows how its owner appears in audit lines (a
    :class:`~taskstore.mcp.auth.Caller`)."""

    @property
    def audit_owner(self) -> str:
        """The owner's label (see :func:`owner_label`)."""
        ...


def audit(event: str, *, owner: str | Audited, task_id: str, **fields: object) -> None:
    """Write one audit line: ``<event> task=<id> owner=<owner> k=v ...``.

    :param owner: the label from :func:`owner_label` (callers decide what is safe to log), or
        the caller whose label it is: then computed only when the line is written (a session
        owner's label is a hash, which a server that keeps no audit trail never needs).
    """
    if not audit_logger.isEnabledFor(logging.INFO):
        return
    if not isinstance(owner, str):
        owner = owner.audit_owner
    extra = "".join(f" {key}={value!r}" for key, value in sorted(fields.items()))
    audit_logger.info("%s task=%s owner=%r%s", event, task_id, owner, extra)
