"""Input checks of :class:`~taskstore.store.TaskStore` (a mixin): text caps, status messages,
TTLs, outcomes."""

from __future__ import annotations

from taskstore.config import MAX_EXPIRES_AT_MS, StoreConfig
from taskstore.errors import InvalidParamsError, ResultTooLargeError
from taskstore.record import Outcome, encode_outcome, validate_json_value
from taskstore.states import TaskStatus

__all__ = ["RESULT_MAX_DEPTH", "StoreChecks"]

# Results may legitimately be deep; the cap only keeps a hostile value from exhausting the stack.
RESULT_MAX_DEPTH = 256
_OUTCOME_OVERHEAD = {
    "result": len(encode_outcome(Outcome.of_result(0))) - 1,
    "error": len(encode_outcome(Outcome(kind="error", error={}))) - 2,
}


class StoreChecks:
    """Validation of what a store writes; every failure is InvalidParamsError (or a subclass)
    raised before anything is written."""

    config: StoreConfig
    result_max_bytes: int

    @staticmethod
    def _check_text(value: object, cap: int, name: str, *, empty: bool = True) -> str:
        """``value`` if it is text of at most ``cap`` UTF-8 bytes (non-empty unless
        ``empty``), else InvalidParamsError."""
        if not isinstance(value, str) or (not empty and not value):
            raise InvalidParamsError(
                f"{name} must be a {'' if empty else 'non-empty '}string"
            )
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidParamsError(f"{name} must be valid Unicode (no lone surrogates)") from None
        if size > cap:
            raise InvalidParamsError(
                f"{name} takes {size} bytes, over the limit of {cap} bytes",
                data={"limit": cap, "size": size},
            )
        return value

    def _message(self, message: object, *, cut: bool = False) -> str | None:
        """A ``statusMessage`` checked against ``max_status_message_bytes``; with ``cut`` (a
        message the store derived, e.g. from an error) cut to fit instead of refused."""
        if message is None:
            return None
        cap = self.config.max_status_message_bytes
        if cut and isinstance(message, str):
            raw = message.encode("utf-8", "replace")
            # errors="ignore" drops a multi-byte character the cut split in two.
            message = raw[:cap].decode("utf-8", "ignore") if len(raw) > cap else (
                raw.decode("utf-8")
            )
        return self._check_text(message, cap, "statusMessage")

    @staticmethod
    def _status(status: TaskStatus | str) -> TaskStatus:
        try:
            return TaskStatus(status)
        except ValueError:
            raise InvalidParamsError(f"Unknown task status: {status!r}") from None

    def _resolve_ttl(self, ttl_ms: object, now: int) -> int | None:
        if ttl_ms is None:
            ttl = self.config.default_ttl_ms
        else:
            if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int):
                raise InvalidParamsError(
                    "ttl must be a non-negative integer number of milliseconds"
                )
            if ttl_ms < 0:
                raise InvalidParamsError("ttl must not be negative")
            ttl = max(ttl_ms, self.config.min_ttl_ms)
            if self.config.max_ttl_ms is not None:
                ttl = min(ttl, self.config.max_ttl_ms)
        # One rule on every backend: no expiry past the latest every backend stores exactly.
        if ttl is not None and now + ttl > MAX_EXPIRES_AT_MS:
            raise InvalidParamsError(
                f"ttl reaches past the latest expiry a task may have ({MAX_EXPIRES_AT_MS} ms "
                "since the epoch, the end of year 9999)",
                data={"maxExpiresAt": MAX_EXPIRES_AT_MS},
            )
        return ttl

    def _checked_outcome(self, outcome: Outcome) -> Outcome:
        value = outcome.result if outcome.kind == "result" else outcome.error
        validate_json_value(
            value,
            max_depth=RESULT_MAX_DEPTH,
            max_string_bytes=self.result_max_bytes,
            what="the result" if outcome.kind == "result" else "the error",
        )
        size = len(encode_outcome(outcome)) - _OUTCOME_OVERHEAD[outcome.kind]
        if size > self.result_max_bytes:
            raise ResultTooLargeError(
                f"The result takes {size} bytes, over the limit of {self.result_max_bytes} bytes",
                data={"limit": self.result_max_bytes, "size": size},
            )
        return outcome
