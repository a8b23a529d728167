"""Owner resolution (DESIGN §5 Anonymous)."""

from __future__ import annotations

import pytest

from taskstore import ANONYMOUS_OWNER, ConfigurationError, SecurityConfig, resolve_owner
from taskstore.security import is_anonymous


@pytest.mark.parametrize(
    ("args", "owner"),
    [
        (("sub", "cid", "sid"), "sub"),
        ((None, "cid", "sid"), "cid"),
        (("", "", "sid"), "sid"),
        ((None, None, None), "local"),
        (("", "", ""), "local"),
    ],
)
def test_resolve_owner_first_non_empty(args: tuple[str | None, ...], owner: str) -> None:
    """The owner is the first non-empty of subject, client id, session id, else "local"."""
    assert resolve_owner(*args) == owner


def test_anonymous_owners() -> None:
    """ "" and "local" are the anonymous owner; anything else is not."""
    assert ANONYMOUS_OWNER == "local"
    assert is_anonymous("") and is_anonymous("local")
    assert not is_anonymous("Local") and not is_anonymous("bob")


def test_security_defaults_and_validation() -> None:
    """Defaults are quota 50,000 (room for a client creating hundreds of tasks a second) and
    no anonymous access; a non-positive quota is refused."""
    assert SecurityConfig() == SecurityConfig(max_tasks_per_owner=50_000, allow_anonymous=False)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ConfigurationError):
            SecurityConfig(max_tasks_per_owner=bad)  # type: ignore[arg-type]
