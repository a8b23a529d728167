"""Multi-round-trip requests (SEP-2322): the signed, opaque ``requestState`` of a stateless call.

A stateless server keeps nothing between the rounds of a call that needs the client's input:
the answers collected so far travel in ``requestState``, which the client echoes with its
retry. The state is bound to the call (tool, arguments) and to the caller, carries an expiry,
and is signed with HMAC-SHA256, so a forged, altered, expired or foreign state is refused
(-32602). Every server process that may receive the retry needs the same key
(``TASKSTORE_REQUEST_STATE_KEY``, or the ``key`` argument); without one a process signs with a
random key of its own, and retries must then reach the same process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from taskstore.errors import INVALID_PARAMS, ProtocolError

__all__ = ["KEY_ENV", "RequestStateCodec", "RoundState"]

#: Environment variable holding the shared signing key (any text; 32+ random bytes advised).
KEY_ENV = "TASKSTORE_REQUEST_STATE_KEY"
_canonical = msgspec.json.Encoder(order="sorted")


class RoundState(msgspec.Struct, frozen=True, kw_only=True):
    """What ``requestState`` carries between the rounds of one call.

    :ivar call: digest of the call (method, tool, arguments) the state belongs to.
    :ivar caller: digest of the caller's owner.
    :ivar answers: every answer so far, by input request key.
    :ivar pending: the keys the last round asked for, with each request's method.
    :ivar expires_ms: wall-clock expiry in epoch ms.
    """

    call: str
    caller: str
    answers: dict[str, Any] = {}
    pending: dict[str, str] = {}
    expires_ms: int


def _digest(value: Any) -> str:
    return hashlib.sha256(_canonical.encode(value)).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class RequestStateCodec:
    """Seals and opens ``requestState`` values. Thread-safe.

    :param key: the signing key; default: ``$TASKSTORE_REQUEST_STATE_KEY``, else
        ``deployment_key`` (derived, so it differs from the session key), else random.
    :param max_age_s: how long a state stays valid.
    :param deployment_key: a secret shared by every worker of the deployment
        (:attr:`TaskStore.deployment_key <taskstore.TaskStore.deployment_key>`), so a state
        sealed by one worker opens on another.
    """

    def __init__(
        self,
        key: bytes | str | None = None,
        *,
        max_age_s: float = 600.0,
        deployment_key: bytes | None = None,
    ) -> None:
        if key is None:
            key = os.environ.get(KEY_ENV) or None
        if key is None and deployment_key is not None:
            key = hmac.new(deployment_key, b"mcp requestState", hashlib.sha256).digest()
        if key is None:
            key = secrets.token_bytes(32)
        self._key = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        self.max_age_s = max_age_s

    @staticmethod
    def call_digest(method: str, name: str, arguments: Mapping[str, Any]) -> str:
        """The digest binding a state to one call."""
        return _digest([method, name, dict(arguments)])

    @staticmethod
    def caller_digest(owner: str) -> str:
        """The digest binding a state to one caller."""
        return _digest(["owner", owner])

    def seal(
        self,
        call: str,
        caller: str,
        answers: Mapping[str, Any],
        pending: Mapping[str, str] | Sequence[str],
    ) -> str:
        """A signed ``requestState`` for the next round of ``call``.

        :param pending: the keys the round asks for, with each request's method (a bare
            sequence of keys records no methods: their answers need only be objects).
        """
        if not isinstance(pending, Mapping):
            pending = dict.fromkeys(pending, "")
        state = RoundState(
            call=call,
            caller=caller,
            answers=dict(answers),
            pending=dict(pending),
            expires_ms=int((time.time() + self.max_age_s) * 1000),
        )
        body = _canonical.encode(state)
        return _b64(body) + "." + _b64(self._sign(body))

    def open(self, token: object, call: str, caller: str) -> RoundState:
        """The state a retry of ``call`` by ``caller`` echoed.

        :raises ProtocolError: -32602 for a state that is malformed, forged, expired, or
            issued for another call or caller.
        """
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 1_048_576:
            raise _invalid()
        body_text, signature_text = token.split(".")
        try:
            body, signature = _unb64(body_text), _unb64(signature_text)
        except (binascii.Error, ValueError):
            raise _invalid() from None
        if not hmac.compare_digest(signature, self._sign(body)):
            raise _invalid()
        try:
            state = msgspec.json.decode(body, type=RoundState)
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise _invalid() from None
        if state.call != call or state.caller != caller:
            raise _invalid()
        if state.expires_ms < time.time() * 1000:
            raise ProtocolError(
                INVALID_PARAMS, "Invalid params: requestState expired; call again without it"
            )
        return state

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()


def _invalid() -> ProtocolError:
    return ProtocolError(
        INVALID_PARAMS, "Invalid params: requestState is not one this server issued for this call"
    )
