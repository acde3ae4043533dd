"""Declared options: how every backend reads its URL query and keyword arguments.

Each backend once parsed its own options, and each did it differently: one passed an unknown query
parameter on to its driver, where it surfaced later as a connection failure (``unexpected keyword
argument 'bogus'``); others said "not a number" for a bad boolean. A backend now declares its options
once, as a tuple of :class:`Option`, and :func:`parse_options` reads the query string and the keyword
arguments (which win) against it, so that every backend reports the same mistakes the same way::

    SPEC = (Option("mode", str, choices=("streams", "pubsub")), Option("maxlen", int, low=0))
    values = parse_options("Redis", SPEC, url, overrides)   # {"mode": "streams", ...}

:raises UnknownOptionError: for a name the spec does not declare (and ``passthrough`` does not take).
:raises InvalidOptionError: for a value that is not of the declared type or out of its range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from .errors import InvalidOptionError, UnknownOptionError
from .urls import query_options

__all__ = ["InvalidOptionError", "Option", "UnknownOptionError", "coerce", "parse_options"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@attrs.frozen(slots=True)
class Option:
    """One declared option.

    :param name: as written in the URL query and as a keyword argument.
    :param kind: ``bool``, ``int``, ``float`` or ``str``; the value is coerced to it.
    :param low: the smallest number accepted (inclusive), for ``int`` and ``float``.
    :param high: the largest number accepted (inclusive).
    :param choices: the values accepted, for ``str`` (compared after lower-casing).
    :param secret: the value is a credential: it is shown as ``***`` in an error.
    """

    name: str
    kind: type = str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False


def coerce(backend: str, option: Option, value: Any) -> Any:
    """``value`` as ``option.kind``, checked against its range or choices.

    Booleans take ``1/0, true/false, yes/no, on/off`` (any case) or a ``bool``; a number is never
    taken for a ``bool`` unless it is 0 or 1, so ``fifo=2`` is an error rather than true.

    :raises InvalidOptionError: naming the option and its value.
    """
    shown = "***" if option.secret else value
    kind = option.kind
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise InvalidOptionError(backend, option.name, shown, "true or false")
    if kind in (int, float):
        if isinstance(value, bool) or (kind is int and isinstance(value, float)):
            raise InvalidOptionError(backend, option.name, shown, f"an {kind.__name__}")
        try:
            number = kind(value)
        except (TypeError, ValueError):
            article = "an" if kind is int else "a"
            raise InvalidOptionError(
                backend, option.name, shown, f"{article} {kind.__name__}"
            ) from None
        if (option.low is not None and number < option.low) or (
            option.high is not None and number > option.high
        ):
            raise InvalidOptionError(backend, option.name, shown, _range(option))
        return number
    text = str(value)
    if option.choices:
        text = text.lower()
        if text not in option.choices:
            raise InvalidOptionError(
                backend, option.name, shown, "one of " + ", ".join(map(repr, option.choices))
            )
    return text


def _range(option: Option) -> str:
    if option.low is not None and option.high is not None:
        return f"between {option.low:g} and {option.high:g}"
    if option.low is not None:
        return f"at least {option.low:g}"
    return f"at most {option.high:g}"


def parse_options(
    backend: str,
    spec: Iterable[Option],
    url: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    passthrough: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """The options of ``url``'s query string and of ``overrides`` (which win), coerced by ``spec``.

    A ``None`` override is ignored (the option keeps the URL's value or the default), so callers can
    forward optional keyword arguments unchanged. Names for which ``passthrough`` returns True are
    returned as given, uncoerced (options a backend hands to its driver unchanged, such as Kafka's
    dotted librdkafka settings). Undeclared options are collected first, so the error names them all.

    :raises UnknownOptionError: for any name neither declared nor passed through.
    :raises InvalidOptionError: for a value that does not fit its declaration (a secret's value is
        shown as ``***``).
    """
    declared = {option.name: option for option in spec}
    raw: dict[str, Any] = dict(query_options(url)) if url else {}
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = [k for k in raw if k not in declared and not (passthrough and passthrough(k))]
    if unknown:
        raise UnknownOptionError(backend, unknown, declared)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        option = declared.get(name)
        if option is None:
            values[name] = value
            continue
        values[name] = coerce(backend, option, value)
    return values
