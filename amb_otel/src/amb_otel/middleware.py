"""The tracing and metrics layer: one :class:`OtelMiddleware` per bus.

Why one layer for both: each layer is a call per message on each edge, and the whole point of the
plugin is that it costs little; the tracing and metering share the attribute work too.

* Publish: a PRODUCER span ``publish <topic>`` whose context goes into the message's headers
  (``traceparent``, ``tracestate``, through the global propagator), so the consumer on any
  broker continues the trace. A reply's span is parented by (and linked to) the process span of
  the request it answers; a dead letter's by its ``dead_letter`` span; a message forwarded without
  an active span continues the trace its headers carry.
* Receive: a CONSUMER span ``process <pattern>``, child of the context the message carries, made
  current while the handler runs (its publishes and requests, its logs, are in the trace). A
  failed attempt records the exception and gets the bus's decision as an event: ``amb.retry``
  with the attempt number, or ``amb.dead_letter`` with the reason, followed by an INTERNAL span
  ``dead_letter <pattern>``.
* Request: a CLIENT span ``request <topic>`` from publishing to the reply, parent of the request's
  publish span; its duration is the ``amb.request.duration`` histogram.

Without an SDK (the API's proxy providers) when a bus connects, the bus gets a :class:`Dormant`
layer that overrides nothing: an installed but unconfigured plugin costs nothing per message.
"""

from __future__ import annotations

import time
from contextvars import Token
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from amb_core.cancellation import H_CONTROL, H_SEQ
from amb_core.deadletter import DLQ_PREFIX, H_DLQ_ORIGINAL_ID
from amb_core.inbox import INBOX_PREFIX
from amb_core.message import Message, build_message
from amb_core.middleware import Call, Middleware, Request, Send, current_receive
from amb_core.stream_responder import H_STREAM_END

from . import _semconv as sc
from ._failures import Failed, Failures, now_ns
from ._metrics import Instruments, subscription_attributes

if TYPE_CHECKING:
    from amb_core.bus import MessageBus
    from amb_core.deadletter import DeadLetter

__all__ = ["Dormant", "OtelMiddleware"]

SCOPE = "amb_otel"
SERVING_LIMIT = 4096
"""Process-span contexts kept for replies not yet sent (a handler that never answers leaves one)."""

_NOOP_TRACER_PROVIDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
_NOOP_METER_PROVIDERS: tuple[type, ...] = (metrics.NoOpMeterProvider,)
try:  # the API's stand-in until an SDK is installed; private, so looked up defensively
    from opentelemetry.metrics._internal import _ProxyMeterProvider

    _NOOP_METER_PROVIDERS += (_ProxyMeterProvider,)
except ImportError:  # pragma: no cover - a later API: metrics are then always recorded
    pass


class OtelMiddleware(Middleware):
    """Traces and meters every message a bus sends and every handler call.

    :param tracer_provider: use this provider instead of the global one (tests, benchmarks, an
        application that keeps providers out of globals).
    :param meter_provider: likewise for metrics.

    The plugin registers one with the global providers; a bus made with ``plugin_middleware=False``
    can take one explicitly, ``MessageBus(middleware=[OtelMiddleware(tracer_provider=...)])``.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        _bus: MessageBus | None = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._bus = _bus
        scheme = "" if _bus is None else _bus.transport.scheme
        self._system = sc.SYSTEMS.get(scheme, scheme)
        self._tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        self._instruments = Instruments(metrics.get_meter(SCOPE, meter_provider=meter_provider))
        self._serving: dict[str, SpanContext] = {}
        self._dead: dict[str, SpanContext] = {}
        self._failures = Failures()
        self._tracing_on = True
        self._metering_on = True
        self._subscription_attributes: dict[tuple[str, str | None], dict[str, str]] = {}
        self._kind_attributes = {
            kind: {sc.SYSTEM: self._system, sc.KIND: kind}
            for kind in ("message", "request", "reply", "stream_frame", "control", "dead_letter")
        }

    def for_bus(self, bus: MessageBus) -> Middleware:
        """A copy that names the bus's messaging system and keeps its own reply links; or, when no
        SDK is configured (the API's proxy providers), a layer that overrides nothing, which the
        bus never calls: an installed but unconfigured plugin costs nothing per message. So an
        application configures OpenTelemetry before it connects its buses (as it would anyway)."""
        tracing = self._tracer_provider is not None or _configured(
            trace.get_tracer_provider(), _NOOP_TRACER_PROVIDERS
        )
        metering = self._meter_provider is not None or _configured(
            metrics.get_meter_provider(), _NOOP_METER_PROVIDERS
        )
        if not tracing and not metering:
            return Dormant()
        layer = OtelMiddleware(self._tracer_provider, self._meter_provider, _bus=bus)
        layer._tracing_on = tracing
        layer._metering_on = metering
        return layer

    # -- publish ----------------------------------------------------------------------------------

    async def on_publish(self, message: Message, send: Send) -> None:
        metering = self._metering_on
        if not metering and not self._tracing_on:
            await send(message)
            return
        topic = message.topic
        headers = message.headers
        kind = _kind(message)
        if metering:
            self._instruments.published.add(1, self._kind_attributes[kind])
        if not self._tracing_on:
            await send(message)
            return
        parent, links = self._publish_parent(message, kind)
        temporary = kind == "reply" or topic.startswith(INBOX_PREFIX)
        attributes: dict[str, Any] = {
            sc.SYSTEM: self._system,
            sc.DESTINATION: topic,
            sc.MESSAGE_ID: message.id,
            sc.OPERATION_TYPE: "send",
            sc.OPERATION_NAME: "publish",
            sc.KIND: kind,
        }
        if temporary:
            attributes[sc.TEMPORARY] = True
        if message.correlation_id is not None:
            attributes[sc.CONVERSATION_ID] = message.correlation_id
        seq = headers.get(H_SEQ)
        if seq is not None:
            attributes[sc.STREAM_SEQ] = seq
        span = self._tracer.start_span(
            f"publish {sc.TEMPORARY_NAME if temporary else topic}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes=attributes,
            links=links,
        )
        carrier = dict(headers)
        propagate.inject(carrier, context=trace.set_span_in_context(span, parent))
        try:
            await send(_with_headers(message, carrier))
        except BaseException as exc:
            _record_failure(span, exc)
            raise
        finally:
            span.end()

    def _publish_parent(
        self, message: Message, kind: str
    ) -> tuple[otel_context.Context | None, list[Link] | None]:
        """Where a publish span hangs when no span is active: a reply under its request's process
        span, a dead letter under its ``dead_letter`` span, a forward under the trace it carries."""
        if kind in ("reply", "stream_frame") and message.correlation_id is not None:
            key = message.correlation_id
            served = (
                self._serving.get(key)
                if H_SEQ in message.headers and H_STREAM_END not in message.headers
                else self._serving.pop(key, None)
            )
            if served is not None:
                return trace.set_span_in_context(NonRecordingSpan(served)), [Link(served)]
        if kind == "dead_letter":
            original = message.headers.get(H_DLQ_ORIGINAL_ID)
            dead = self._dead.pop(original, None) if original is not None else None
            if dead is not None:
                return trace.set_span_in_context(NonRecordingSpan(dead)), None
        if "traceparent" in message.headers and not trace.get_current_span().is_recording():
            return propagate.extract(message.headers), None
        return None, None

    # -- request ----------------------------------------------------------------------------------

    async def on_request(self, topic: str, request: Request) -> Message:
        metering = self._metering_on
        tracing = self._tracing_on
        if not metering and not tracing:
            return await request()
        started = time.perf_counter()
        outcome = "ok"
        span = None
        token = None
        if tracing:
            span = self._tracer.start_span(
                f"request {topic}",
                kind=SpanKind.CLIENT,
                attributes={
                    sc.SYSTEM: self._system,
                    sc.DESTINATION: topic,
                    sc.OPERATION_TYPE: "send",
                    sc.OPERATION_NAME: "request",
                },
            )
            token = otel_context.attach(trace.set_span_in_context(span))
        try:
            reply = await request()
            if span is not None and reply.correlation_id is not None:
                span.set_attribute(sc.CONVERSATION_ID, reply.correlation_id)
            return reply
        except BaseException as exc:
            outcome = type(exc).__name__
            if span is not None:
                _record_failure(span, exc)
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
            if span is not None:
                span.end()
            if metering:
                self._instruments.request_duration.record(
                    time.perf_counter() - started, {sc.SYSTEM: self._system, sc.OUTCOME: outcome}
                )

    # -- receive ----------------------------------------------------------------------------------

    async def on_receive(self, message: Message, call: Call) -> Any:
        metering = self._metering_on
        tracing = self._tracing_on
        if not metering and not tracing:
            return await call(message)
        where = current_receive()
        pattern, group = (message.topic, None) if where is None else (where.pattern, where.group)
        attributes = self._subscription_attributes.get((pattern, group))
        if attributes is None:
            attributes = subscription_attributes(self._system, pattern, group)
            if len(self._subscription_attributes) < 10_000:
                self._subscription_attributes[(pattern, group)] = attributes
        instruments = self._instruments
        span = None
        token = None
        if tracing:
            span, token = self._start_process(message, pattern, group)
        if metering:
            instruments.in_flight.add(1, attributes)
        started = time.perf_counter()
        try:
            result = await call(message)
        except BaseException as exc:
            if token is not None:
                otel_context.detach(token)
            if metering:
                instruments.failed.add(1, attributes)
            if span is not None:
                _record_failure(span, exc)
            if isinstance(exc, Exception):
                self._failures.put(message.id, Failed(span, now_ns(), attributes))
            elif span is not None:
                span.end()
            raise
        else:
            if token is not None:
                otel_context.detach(token)
            if span is not None:
                span.end()
            if metering:
                instruments.handled.add(1, attributes)
            return result
        finally:
            if metering:
                instruments.in_flight.add(-1, attributes)
                instruments.handler_duration.record(time.perf_counter() - started, attributes)

    def _start_process(
        self, message: Message, pattern: str, group: str | None
    ) -> tuple[trace.Span, Token[otel_context.Context]]:
        """The process span, current from now on; a request's context kept for its reply."""
        parent = propagate.extract(message.headers) if message.headers else None
        attributes: dict[str, Any] = {
            sc.SYSTEM: self._system,
            sc.DESTINATION: message.topic,
            sc.TEMPLATE: pattern,
            sc.MESSAGE_ID: message.id,
            sc.OPERATION_TYPE: "process",
            sc.OPERATION_NAME: "process",
            sc.ATTEMPT: message.attempt,
        }
        if group is not None:
            attributes[sc.GROUP] = group
        if message.correlation_id is not None:
            attributes[sc.CONVERSATION_ID] = message.correlation_id
        span = self._tracer.start_span(
            f"process {pattern}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        if message.reply_to is not None:
            serving = self._serving
            serving[message.correlation_id or message.id] = span.get_span_context()
            if len(serving) > SERVING_LIMIT:
                del serving[next(iter(serving))]
        return span, otel_context.attach(trace.set_span_in_context(span, parent))

    # -- the bus's decisions ----------------------------------------------------------------------

    def on_retry(self, message: Message, error: BaseException, delay: float) -> None:
        failed = self._failures.pop(message.id)
        if self._metering_on:
            attributes = failed.attributes if failed is not None else {sc.SYSTEM: self._system}
            self._instruments.retried.add(1, attributes)
        if failed is not None and failed.span is not None:
            failed.span.add_event(
                sc.EVENT_RETRY,
                {
                    sc.ATTEMPT: message.attempt,
                    sc.RETRY_DELAY: delay,
                    "exception.type": type(error).__name__,
                },
                timestamp=failed.at_ns,
            )
        if failed is not None:
            failed.end()

    def on_dead_letter(self, dead: DeadLetter) -> None:
        message = dead.message
        failed = self._failures.pop(message.id)
        if self._metering_on:
            attributes = (
                dict(failed.attributes) if failed is not None else {sc.SYSTEM: self._system}
            )
            attributes.setdefault(sc.TEMPLATE, dead.subscription)
            attributes[sc.DEAD_LETTER_REASON] = dead.reason
            self._instruments.dead_lettered.add(1, attributes)
        details = {
            sc.DEAD_LETTER_REASON: dead.reason,
            sc.DEAD_LETTER_ATTEMPTS: dead.attempts,
            sc.DEAD_LETTER_ERROR: dead.error[:1000],
        }
        parent: otel_context.Context | None = None
        if failed is not None and failed.span is not None:
            failed.span.add_event(sc.EVENT_DEAD_LETTER, details, timestamp=failed.at_ns)
            parent = trace.set_span_in_context(failed.span)
        if failed is not None:
            failed.end()
        if not self._tracing_on:
            return
        if parent is None and message.headers:
            parent = propagate.extract(message.headers)
        span = self._tracer.start_span(
            f"dead_letter {dead.subscription}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes={
                sc.SYSTEM: self._system,
                sc.DESTINATION: message.topic,
                sc.TEMPLATE: dead.subscription,
                sc.MESSAGE_ID: message.id,
                **details,
            },
        )
        span.set_status(Status(StatusCode.ERROR, dead.reason))
        span.end()
        dead_letters = self._dead
        dead_letters[message.id] = span.get_span_context()
        if len(dead_letters) > SERVING_LIMIT:
            del dead_letters[next(iter(dead_letters))]


class Dormant(Middleware):
    """The plugin's layer on a bus connected without an OpenTelemetry SDK: it overrides nothing, so
    the bus calls the transport and the handlers directly."""


def _configured(provider: object, stand_ins: tuple[type, ...]) -> bool:
    return not isinstance(provider, stand_ins)


def _kind(message: Message) -> str:
    """What a published message is, for a bounded metric attribute and the span."""
    headers = message.headers
    if headers:
        if H_SEQ in headers:  # a frame also names the responder's inbox as its reply_to
            return "stream_frame"
        if H_CONTROL in headers:
            return "control"
    if message.reply_to is not None:
        return "request"
    if message.topic.startswith(INBOX_PREFIX):
        return "reply"
    if message.topic.startswith(DLQ_PREFIX):
        return "dead_letter"
    return "message"


def _with_headers(m: Message, headers: dict[str, str]) -> Message:
    """``m.evolve(headers=headers)`` at a third of the cost (the core's positional constructor)."""
    return build_message(
        m.topic,
        m.payload,
        headers,
        m.id,
        m.correlation_id,
        m.reply_to,
        m.timestamp,
        m.sender,
        m.ttl,
        m.attempt,
        m.priority,
        m.key,
    )


def _record_failure(span: trace.Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.set_attribute(sc.ERROR_TYPE, type(exc).__name__)
