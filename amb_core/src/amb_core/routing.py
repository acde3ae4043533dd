"""Content-based routing: consume a source pattern, forward each message by what it contains.

Rules are data first, so plugins and configuration files can contribute them::

    Rule(to="tasks.urgent", when={"payload.priority": {"gte": 8}, "headers.region": {"in": ["eu"]}})
    Rule(to=["audit.all", "tasks.normal"], when={"payload.type": "analyze"})   # bare value: equals
    Rule(to="tasks.ml", when=lambda message: "model" in message.payload)

A condition's key is ``topic``, ``sender``, ``key``, ``priority``, ``headers.<name>`` or
``payload.<dotted.path>``; its operators are ``eq``, ``ne``, ``in``, ``exists``, ``regex``, ``gt``,
``gte``, ``lt``, ``lte``. All conditions of a rule must hold. A router in a ``group`` shares its work
with the other router instances of that group. A forwarded message keeps payload, headers, key,
correlation id and ``reply_to`` (so a routed request is still answered to its requester) and records
the source topic in the ``amb-routed-from`` header. What no rule takes goes to ``unroutable`` when
given, and to the dead letters (reason ``unroutable``) otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from .deadletter import DeadLetter
from .errors import ConfigurationError
from .message import Message
from .plugins import registries
from .topics import validate_topic

if TYPE_CHECKING:
    from .bus import MessageBus
    from .subscriber import Subscriber

__all__ = ["H_ROUTED_FROM", "OPERATORS", "Router", "Rule", "compile_condition"]

H_ROUTED_FROM = "amb-routed-from"
_MISSING = object()
Predicate = Callable[[Message], bool]


def _field(message: Message, path: str) -> Any:
    head, _, rest = path.partition(".")
    if head == "payload":
        value: Any = message.payload
        for part in rest.split(".") if rest else ():
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return _MISSING
        return value
    if head == "headers":
        return message.headers.get(rest, _MISSING)
    if head in ("topic", "sender", "key", "priority", "correlation_id") and not rest:
        value = getattr(message, head)
        return _MISSING if value is None else value
    raise ConfigurationError(
        f"unknown field {path!r}: use topic, sender, key, priority, headers.<name> or payload.<path>"
    )


def _compare(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def check(value: Any, operand: Any) -> bool:
        try:
            return value is not _MISSING and not isinstance(value, bool) and op(value, operand)
        except TypeError:
            return False

    return check


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda value, operand: value is not _MISSING and value == operand,
    "ne": lambda value, operand: value is _MISSING or value != operand,
    "in": lambda value, operand: value is not _MISSING and value in operand,
    "exists": lambda value, operand: (value is not _MISSING) == bool(operand),
    "regex": lambda value, operand: isinstance(value, str) and operand.search(value) is not None,
    "gt": _compare(lambda a, b: a > b),
    "gte": _compare(lambda a, b: a >= b),
    "lt": _compare(lambda a, b: a < b),
    "lte": _compare(lambda a, b: a <= b),
}


def compile_condition(path: str, spec: Any) -> Predicate:
    """One condition as a predicate; a non-dict ``spec`` means equality.

    :raises ConfigurationError: for an unknown operator or field, or a bad regex.
    """
    _field(Message("x", None), path)  # reject unknown field names now, not per message
    checks: list[tuple[Callable[[Any, Any], bool], Any]] = []
    for op, operand in spec.items() if isinstance(spec, Mapping) else [("eq", spec)]:
        if op not in OPERATORS:
            raise ConfigurationError(f"unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
        if op == "regex":
            try:
                operand = re.compile(operand)
            except re.error as exc:
                raise ConfigurationError(f"bad regex for {path!r}: {exc}") from None
        checks.append((OPERATORS[op], operand))

    def predicate(message: Message) -> bool:
        value = _field(message, path)
        return all(check(value, operand) for check, operand in checks)

    return predicate


def _destinations(to: str | Sequence[str]) -> tuple[str, ...]:
    targets = (to,) if isinstance(to, str) else tuple(to)
    if not targets:
        raise ConfigurationError("a rule needs at least one destination")
    for target in targets:
        validate_topic(target)
    return targets


@attrs.frozen
class Rule:
    """Forward matching messages to ``to`` (one topic or several)."""

    to: tuple[str, ...] = attrs.field(converter=_destinations)
    when: Mapping[str, Any] | Predicate = attrs.field(factory=dict)
    name: str | None = None
    _predicates: tuple[Predicate, ...] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if callable(self.when):
            predicates: tuple[Predicate, ...] = (self.when,)
        else:
            predicates = tuple(compile_condition(p, s) for p, s in self.when.items())
        object.__setattr__(self, "_predicates", predicates)

    def matches(self, message: Message) -> bool:
        """True when every condition holds."""
        return all(predicate(message) for predicate in self._predicates)


class Router:
    """Consumes ``source`` and forwards by rules. Start it with ``bus.route(...)``.

    :param rules: a list of :class:`Rule`, or the name of a rule set registered by a plugin.
    :param group: share the work with other routers of that group.
    :param mode: ``"first"``: the first matching rule wins; ``"all"``: every matching rule.
    :param unroutable: topic for messages no rule takes (default: dead letters).
    """

    def __init__(
        self,
        bus: MessageBus,
        source: str,
        rules: Sequence[Rule] | str,
        *,
        group: str | None = None,
        mode: Literal["first", "all"] = "first",
        unroutable: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        if isinstance(rules, str):
            rules = registries().routers.get(rules)
        if mode not in ("first", "all"):
            raise ConfigurationError("mode must be 'first' or 'all'")
        if unroutable is not None:
            validate_topic(unroutable)
        self.bus = bus
        self.source = source
        self.rules = list(rules)
        self.group = group
        self.mode = mode
        self.unroutable = unroutable
        self.concurrency = concurrency

    def destinations(self, message: Message) -> list[str]:
        """Where ``message`` goes (empty: unroutable)."""
        found: list[str] = []
        for rule in self.rules:
            if rule.matches(message):
                found.extend(t for t in rule.to if t not in found)
                if self.mode == "first":
                    break
        return found

    async def handle(self, message: Message) -> None:
        """Forward one message; the subscription's retry policy covers publish failures."""
        targets = self.destinations(message)
        if not targets:
            if self.unroutable is None:
                dead = DeadLetter(
                    message, "unroutable", "no routing rule matched", message.attempt, self.source
                )
                await self.bus._dead_letter(dead)
                return
            targets = [self.unroutable]
        headers = {**message.headers, H_ROUTED_FROM: message.topic}
        for target in targets:
            await self.bus._publish_message(
                Message(
                    target,
                    message.payload,
                    headers,
                    correlation_id=message.correlation_id,
                    reply_to=message.reply_to,
                    sender=message.sender,
                    ttl=message.ttl,
                    timestamp=message.timestamp,
                    priority=message.priority,
                    key=message.key,
                )
            )

    def start(self) -> Subscriber:
        """Subscribe the router; returns the subscription (``await`` it to wait until ready)."""
        return self.bus.subscribe(
            self.source, self.handle, group=self.group, concurrency=self.concurrency
        )
