"""amb_core.options: what every backend's URL and keyword options go through."""

from __future__ import annotations

import pytest

from amb_core.errors import ConfigurationError, InvalidOptionError, UnknownOptionError
from amb_core.message import Message
from amb_core.options import Option, coerce, parse_options
from amb_core.transport import Subscription, SubscriptionSpec, Transport

SPEC = (
    Option("mode", str, choices=("fast", "safe")),
    Option("count", int, low=1, high=10),
    Option("ratio", float, low=0),
    Option("flag", bool),
    Option("token", str, secret=True),
    Option("name", str),
)


def test_query_and_keywords_are_coerced_and_keywords_win() -> None:
    values = parse_options(
        "X", SPEC, "x://h?mode=FAST&count=3&ratio=0.5&flag=yes&name=a", {"name": "b", "count": None}
    )
    assert values == {"mode": "fast", "count": 3, "ratio": 0.5, "flag": True, "name": "b"}
    assert parse_options("X", SPEC) == {}


@pytest.mark.parametrize(
    ("url", "overrides"), [("x://h?bogus=1&name=a", {}), ("x://h", {"bogus": 1})]
)
def test_an_unknown_option_is_named(url: str, overrides: dict[str, object]) -> None:
    with pytest.raises(UnknownOptionError) as caught:
        parse_options("X", SPEC, url, overrides)
    assert isinstance(caught.value, ConfigurationError) and isinstance(caught.value, ValueError)
    assert caught.value.names == ["bogus"]
    assert "unknown X option 'bogus'" in str(caught.value) and "known: count, flag" in str(
        caught.value
    )


def test_every_unknown_option_is_named_at_once() -> None:
    with pytest.raises(UnknownOptionError, match="options 'a', 'b'"):
        parse_options("X", SPEC, "x://h?b=1", {"a": 2})


def test_passthrough_keeps_the_driver_s_options_raw() -> None:
    values = parse_options("X", SPEC, "x://h?socket.timeout=5", passthrough=lambda k: "." in k)
    assert values == {"socket.timeout": "5"}


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        (Option("n", int), "7", 7),
        (Option("n", int), 7, 7),
        (Option("r", float), "1e-3", 0.001),
        (Option("r", float), 2, 2.0),
        (Option("b", bool), "On", True),
        (Option("b", bool), "0", False),
        (Option("b", bool), False, False),
        (Option("s", str), 12, "12"),
    ],
)
def test_coerce_by_declared_type(option: Option, value: object, expected: object) -> None:
    got = coerce("X", option, value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (Option("n", int), "many", "X option n='many' is not an int"),
        (Option("n", int), 1.5, "n=1.5 is not an int"),  # not silently truncated
        (Option("n", int), True, "n=True is not an int"),
        (Option("r", float), "fast", "r='fast' is not a float"),
        (Option("b", bool), "maybe", "b='maybe' is not true or false"),
        (Option("b", bool), 2, "b=2 is not true or false"),
        (Option("n", int, low=1, high=10), 11, "n=11 is not between 1 and 10"),
        (Option("r", float, low=0), -1, "r=-1 is not at least 0"),
        (Option("m", str, choices=("a", "b")), "c", "m='c' is not one of 'a', 'b'"),
    ],
)
def test_a_bad_value_names_option_and_value(option: Option, value: object, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message.replace("(", r"\(")) as caught:
        coerce("X", option, value)
    assert caught.value.name == option.name and caught.value.value == value


def test_a_secret_value_is_never_shown() -> None:
    with pytest.raises(InvalidOptionError) as caught:
        parse_options("X", (Option("token", int, secret=True),), "x://h?token=hunter2")
    assert "hunter2" not in str(caught.value) and "token='***'" in str(caught.value)


class _Declared(Transport):
    """A transport built the documented way: ``__init__(url, **options)``, options declared."""

    scheme = "declared"
    SPEC = (Option("depth", int, low=1),)

    def __init__(self, url: str, **options: object) -> None:
        self.url = url
        self.options = parse_options("Declared", self.SPEC, url, options)

    async def connect(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def publish(self, message: Message) -> None:
        pass

    async def subscribe(self, spec: SubscriptionSpec) -> Subscription:
        raise NotImplementedError


def test_transport_from_url_default_builds_from_url_and_options() -> None:
    transport = _Declared.from_url("declared://h?depth=2", depth="3")
    assert isinstance(transport, _Declared)
    assert transport.url == "declared://h?depth=2" and transport.options == {"depth": 3}
    with pytest.raises(UnknownOptionError, match="unknown Declared option 'deep'"):
        _Declared.from_url("declared://h", deep=1)
