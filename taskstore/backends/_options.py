"""Backend options from a URL's query string and keyword arguments (shared by every backend).

Query parameters arrive as strings and keywords as Python values; each option has a converter
that accepts both. Keywords beat query parameters, as in ``limits``' storage URLs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from taskstore.errors import ConfigurationError

__all__ = ["Converter", "to_bool", "to_float", "to_int", "to_optional_str", "to_str", "url_options"]

#: Turns a query-string (or keyword) value into the option's type; raises ``ValueError``.
Converter = Callable[[Any], Any]


def to_bool(value: object) -> bool:
    """``true``/``1``/``yes``/``on`` and their opposites, or a bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def to_int(value: object) -> int:
    """An integer, from an int or its decimal text (never a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"not an integer: {value!r}")
    return int(value)


def to_float(value: object) -> float:
    """A number, from an int, a float or its text (never a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def to_str(value: object) -> str:
    """A string, unchanged."""
    if not isinstance(value, str):
        raise ValueError(f"not a string: {value!r}")
    return value


def to_optional_str(value: object) -> str | None:
    """A string; ``None`` or an empty query value means "not set"."""
    return None if value is None or value == "" else to_str(value)


def url_options(
    url: str, options: Mapping[str, Any], converters: Mapping[str, Converter]
) -> dict[str, Any]:
    """Merge ``url``'s query parameters with ``options`` (keywords win), then convert each.

    :raises ConfigurationError: an option not in ``converters`` (the message lists the known
        ones) or a value its converter refuses.
    """
    scheme = urlsplit(url).scheme
    params: dict[str, Any] = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    params.update(options)
    unknown = sorted(set(params) - set(converters))
    if unknown:
        raise ConfigurationError(
            f"Unknown option(s) for {scheme}://: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(converters))}"
        )
    converted: dict[str, Any] = {}
    for name, value in params.items():
        try:
            converted[name] = converters[name](value)
        except ValueError as exc:
            raise ConfigurationError(
                f"Bad value for the {scheme}:// option {name!r}: {exc}"
            ) from None
    return converted
