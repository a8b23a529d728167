"""What a client learns when a tool raises something unexpected: the error-message policy.

An exception a tool did not mean to show (anything but :class:`~taskstore.errors.ToolError`
and the protocol errors of :mod:`taskstore.errors`) may carry secrets: connection strings,
file paths, other users' data. By default the client therefore gets only a generic message
with a fresh *error id*::

    Tool fetch_data failed unexpectedly (error id 3f2a9c0d41b7e865)

and the full exception, with its traceback, is logged once at ``ERROR`` with the same id (the
log record also carries it as ``record.error_id``), so an operator finds the cause from what a
user quotes. Every failure gets its own id. For development, ``expose=True`` sends the raw
``Tool fetch_data failed: RuntimeError: ...`` text instead (still logged the same way).
"""

from __future__ import annotations

import logging
import secrets

__all__ = ["MAX_DIAGNOSTIC", "new_error_id", "unexpected_failure"]

#: Longest client-facing diagnostic (it becomes a task's ``statusMessage``); longer raw texts
#: are cut with an ellipsis.
MAX_DIAGNOSTIC = 500


def new_error_id() -> str:
    """A fresh error id: 16 random hex digits (64 bits), different for every failure."""
    return secrets.token_hex(8)


def unexpected_failure(
    logger: logging.Logger,
    subject: str,
    exc: BaseException,
    *,
    expose: bool = False,
    task_id: str | None = None,
) -> str:
    """Log ``exc`` once at ``ERROR`` under a fresh error id and return the message for the
    client (a ``-32603`` message, a task's ``statusMessage`` and its stored error alike).

    :param logger: where the full exception goes (``taskstore.mcp`` for tools).
    :param subject: what failed, as the client knows it, e.g. ``"Tool fetch_data"``.
    :param expose: send the exception's own text instead of the generic message (development
        only: it may reveal secrets).
    :param task_id: the task the failure ends, named in the log line.
    :returns: ``"<subject> failed unexpectedly (error id <id>)"``, or with ``expose`` the raw
        ``"<subject> failed: <type>: <text>"`` cut to :data:`MAX_DIAGNOSTIC` characters.
    """
    error_id = new_error_id()
    where = f", task {task_id}" if task_id is not None else ""
    logger.error(
        "%s failed unexpectedly (error id %s%s)",
        subject,
        error_id,
        where,
        exc_info=exc,
        extra={"error_id": error_id},
    )
    if not expose:
        return f"{subject} failed unexpectedly (error id {error_id})"
    text = f"{subject} failed: {type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_DIAGNOSTIC else text[: MAX_DIAGNOSTIC - 1] + "…"
