"""Typed payloads: a handler says what its payload is, and the bus validates it.

A handler whose first parameter is annotated with a type other than :class:`Message` receives the
payload validated as that type; a second parameter, if it has one, receives the :class:`Message`
itself (headers, sender, reply address)::

    class Order(pydantic.BaseModel):
        id: int
        total: float

    @bus.subscribe("orders.created")
    async def on_order(order: Order, message: Message) -> Receipt:
        ...

Handlers annotated ``message: Message``, ``Any`` or ``object`` (or not at all) are unchanged. Types
are validated by pydantic (models: the ``pydantic`` extra) or by msgspec (dataclasses, attrs
classes, TypedDicts, builtins: the ``typed`` extra), both of which also give the JSON Schema that
``amb docs`` writes. A payload that does not validate is dead-lettered at once with reason
``invalid`` and the validation errors, without retries (it would fail every time), and the
subscription goes on.

The wire stays JSON: an instance given to ``publish``, returned as a reply or yielded as a chunk is
turned into plain JSON values first (:func:`plain`), so any language can read it. Plain JSON values
pass untouched at the cost of one type lookup.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any

from .errors import ConfigurationError, PayloadValidationError
from .message import Message

__all__ = [
    "PLAIN_TYPES",
    "PayloadCodec",
    "codec_for",
    "plain",
    "signature_types",
    "typed_handler",
]

PLAIN_TYPES = frozenset({dict, list, str, int, float, bool, type(None), bytes, bytearray, tuple})
"""Payload types sent as they are; the bus's hot paths test this set before calling :func:`plain`."""
_PLAIN = PLAIN_TYPES


def _is_pydantic(kind: Any) -> bool:
    return (
        isinstance(kind, type)
        and hasattr(kind, "model_validate")
        and hasattr(kind, "model_json_schema")
    )


class PayloadCodec:
    """Validates payloads as one type and describes it as JSON Schema."""

    def __init__(self, kind: Any) -> None:
        self.kind = kind
        self.name = getattr(kind, "__name__", repr(kind))
        self._pydantic = _is_pydantic(kind)
        if self._pydantic:
            self._validate: Callable[[Any], Any] = kind.model_validate

            def pydantic_schema(template: str) -> tuple[dict[str, Any], dict[str, Any]]:
                schema = dict(kind.model_json_schema(ref_template=template))
                return schema, schema.pop("$defs", {})

            self._schema: Callable[[str], tuple[dict[str, Any], dict[str, Any]]] = pydantic_schema
            return
        try:
            import msgspec
        except ImportError:
            raise ConfigurationError(
                f"payload type {self.name} needs msgspec to validate it: "
                'pip install "agent-message-bus[typed]" (pydantic models need the pydantic extra)'
            ) from None

        def validate(payload: Any) -> Any:
            if isinstance(kind, type) and isinstance(payload, kind):
                return payload  # an in-process transport handed over the instance itself
            return msgspec.convert(payload, kind)

        def msgspec_schema(template: str) -> tuple[dict[str, Any], dict[str, Any]]:
            (schema,), components = msgspec.json.schema_components([kind], ref_template=template)
            return schema, components

        self._validate = validate
        self._schema = msgspec_schema

    def validate(self, payload: Any, topic: str) -> Any:
        """``payload`` as the type.

        :raises PayloadValidationError: with the validator's errors.
        """
        try:
            return self._validate(payload)
        except Exception as exc:  # pydantic's ValidationError, msgspec's ValidationError
            raise PayloadValidationError(topic, self.name, str(exc)) from None

    def schema(
        self, ref_template: str = "#/$defs/{model}"
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The type's JSON Schema and the named schemas it refers to, referred to through
        ``ref_template`` (``{model}`` is replaced by each name), to be placed where the template
        points (``#/components/schemas/{model}`` in an AsyncAPI document)."""
        template = ref_template.replace("{model}", "{name}") if not self._pydantic else ref_template
        return self._schema(template)


_codecs: dict[Any, PayloadCodec] = {}


def codec_for(kind: Any) -> PayloadCodec:
    """The :class:`PayloadCodec` for ``kind`` (made once per type).

    :raises ConfigurationError: when the library that validates it is not installed.
    """
    try:
        return _codecs[kind]
    except KeyError:
        codec = _codecs[kind] = PayloadCodec(kind)
        return codec
    except TypeError:  # an unhashable annotation
        return PayloadCodec(kind)


_UNTYPED = (inspect.Parameter.empty, Any, object, Message)
"""First-parameter annotations that declare no payload type: the handler takes the ``Message``.
``object`` is here because it is how a handler says "anything" under a strict type checker; read as
a payload type, it validated nothing and yet cost a validation per message (and needed msgspec)."""


def _hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # unresolvable forward references: the raw annotations serve
        return dict(getattr(function, "__annotations__", {}))


def signature_types(handler: Callable[..., Any]) -> tuple[Any, bool, Any]:
    """``(payload type or None, wants the message as a second argument, return type or None)``
    read from ``handler``'s signature."""
    function = handler if inspect.isroutine(handler) else getattr(handler, "__call__", handler)  # noqa: B004
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature
        return None, False, None
    hints = _hints(function)
    returns = hints.get("return")
    if returns in (None, type(None), Any):
        returns = None
    if not parameters:
        return None, False, returns
    first = hints.get(parameters[0].name, inspect.Parameter.empty)
    if first in _UNTYPED or typing.get_origin(first) is Message:
        return None, False, returns
    if isinstance(first, str):
        raise ConfigurationError(
            f"cannot resolve the payload annotation {first!r} of {handler!r}: import the type "
            "where the handler is defined"
        )
    return first, len(parameters) > 1, returns


def typed_handler(handler: Callable[..., Any]) -> tuple[Callable[..., Any], PayloadCodec | None]:
    """``handler`` as a ``Message``-taking handler of the same kind (coroutine, plain function or
    async generator) that validates the payload first, and its codec; unchanged, with None, when
    it declares no payload type.

    :raises ConfigurationError: when the validating library is missing.
    """
    kind, wants_message, _ = signature_types(handler)
    if kind is None:
        return handler, None
    codec = codec_for(kind)
    validate = codec.validate
    if inspect.isasyncgenfunction(handler) or inspect.isasyncgenfunction(
        getattr(handler, "__call__", None)  # noqa: B004
    ):

        async def typed_stream(message: Message) -> Any:
            value = validate(message.payload, message.topic)
            chunks = handler(value, message) if wants_message else handler(value)
            async for chunk in chunks:
                yield chunk

        typed_stream.__name__ = getattr(handler, "__name__", "handler")
        return typed_stream, codec

    async def typed_call(message: Message) -> Any:
        value = validate(message.payload, message.topic)
        result = handler(value, message) if wants_message else handler(value)
        if inspect.isawaitable(result):
            result = await result
        return result

    typed_call.__name__ = getattr(handler, "__name__", "handler")
    return typed_call, codec


def plain(payload: Any) -> Any:
    """``payload`` as plain JSON values when it is an instance of a model, dataclass or attrs
    class; anything else as it is (JSON values at the cost of one type lookup)."""
    if type(payload) in _PLAIN:
        return payload
    if _is_pydantic(type(payload)):
        return payload.model_dump(mode="json")
    if dataclasses.is_dataclass(payload) and not isinstance(payload, type):
        return _builtins(payload, lambda: dataclasses.asdict(payload))
    if hasattr(type(payload), "__attrs_attrs__"):
        import attrs

        return _builtins(payload, lambda: attrs.asdict(payload))
    return payload


def _builtins(value: Any, fallback: Callable[[], Any]) -> Any:
    try:
        import msgspec
    except ImportError:
        return fallback()
    return msgspec.to_builtins(value)
