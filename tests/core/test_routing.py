"""Routing rules: every operator, field and mode, and the errors for bad rules."""

from __future__ import annotations

import pytest

from amb_core import ConfigurationError, InvalidTopicError, Message, MessageBus, PluginError, Rule
from amb_core.routing import Router
from amb_core.testing.conformance import wait_until

MSG = Message(
    "orders.eu.created",
    {"total": 120.5, "items": [{"sku": "a"}], "customer": {"tier": "gold"}, "flag": True},
    {"region": "eu-west"},
    sender="shop",
    key="c-1",
    priority=5,
)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"payload.total": {"gt": 100}}, True),
        ({"payload.total": {"gte": 120.5, "lt": 121}}, True),
        ({"payload.total": {"lte": 100}}, False),
        ({"payload.customer.tier": "gold"}, True),
        ({"payload.customer.tier": {"ne": "gold"}}, False),
        ({"payload.items.0.sku": {"in": ["a", "b"]}}, True),
        ({"payload.missing": {"exists": False}}, True),
        ({"payload.missing": {"exists": True}}, False),
        ({"payload.missing": {"gt": 1}}, False),
        ({"payload.customer.tier": {"gt": 1}}, False),
        ({"payload.flag": {"gt": 0}}, False),
        ({"headers.region": {"regex": "^eu-"}}, True),
        ({"headers.region": {"regex": "^us-"}}, False),
        ({"topic": {"regex": r"\.created$"}, "sender": "shop"}, True),
        ({"key": "c-1", "priority": {"gte": 5}}, True),
        ({"headers.absent": {"ne": "x"}}, True),
    ],
)
def test_conditions(when: dict[str, object], expected: bool) -> None:
    assert Rule(to="out", when=when).matches(MSG) is expected


def test_callable_rules_and_modes() -> None:
    rules = [
        Rule(to="first", when={"payload.total": {"gt": 100}}),
        Rule(to=["second", "first"], when=lambda m: m.key == "c-1"),
    ]
    bus = MessageBus()
    assert Router(bus, "orders.>", rules).destinations(MSG) == ["first"]
    assert Router(bus, "orders.>", rules, mode="all").destinations(MSG) == ["first", "second"]


@pytest.mark.parametrize(
    ("to", "when", "error"),
    [
        ("out", {"payload.x": {"approx": 1}}, ConfigurationError),
        ("out", {"body.x": 1}, ConfigurationError),
        ("out", {"payload.x": {"regex": "("}}, ConfigurationError),
        ([], {}, ConfigurationError),
        ("bad.*", {}, InvalidTopicError),
    ],
)
def test_bad_rules_fail_at_construction(
    to: object, when: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        Rule(to=to, when=when)  # type: ignore[arg-type]


def test_unknown_rule_set_and_bad_mode() -> None:
    bus = MessageBus()
    with pytest.raises(PluginError, match="no rule set named"):
        Router(bus, "a", "nope")
    with pytest.raises(ConfigurationError):
        Router(bus, "a", [], mode="some")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_routed_request_is_answered_to_the_requester() -> None:
    async with MessageBus() as bus:
        await bus.subscribe("svc.math", lambda m: m.payload * 10)
        await bus.route("gateway.in", [Rule(to="svc.math", when={"payload": {"exists": True}})])
        assert (await bus.request("gateway.in", 4, timeout=5)).payload == 40


@pytest.mark.anyio
async def test_unroutable_defaults_to_dead_letters() -> None:
    async with MessageBus() as bus:
        dead: list[Message] = []
        await bus.subscribe("dlq.>", dead.append)
        await bus.route("in.*", [Rule(to="never", when={"payload.x": 1})])
        await bus.publish("in.a", {"x": 2})
        await wait_until(lambda: len(dead) == 1, 5, "the dead letter")
        assert dead[0].headers["amb-dlq-reason"] == "unroutable"
