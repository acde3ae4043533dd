"""The plugin's instruments, through the OpenTelemetry metrics API.

Made once per bus from the global meter provider (a proxy until the application installs an SDK, so
an SDK configured after the first bus still receives them). Every attribute set is bounded: the
messaging system, the subscription pattern and group, an outcome or a dead-letter reason, never a
concrete topic or a message id.
"""

from __future__ import annotations

from opentelemetry import metrics

from . import _semconv as sc

__all__ = ["Instruments"]


class Instruments:
    """The counters, histograms and the in-flight gauge of one bus."""

    __slots__ = (
        "dead_lettered",
        "failed",
        "handled",
        "handler_duration",
        "in_flight",
        "published",
        "request_duration",
        "retried",
    )

    def __init__(self, meter: metrics.Meter) -> None:
        self.published = meter.create_counter(
            "amb.messages.published", unit="{message}", description="Messages the bus sent."
        )
        self.handled = meter.create_counter(
            "amb.messages.handled",
            unit="{message}",
            description="Handler calls that returned (one per attempt).",
        )
        self.failed = meter.create_counter(
            "amb.messages.failed",
            unit="{message}",
            description="Handler calls that raised (one per attempt).",
        )
        self.retried = meter.create_counter(
            "amb.messages.retried",
            unit="{message}",
            description="Failed attempts that will be tried again.",
        )
        self.dead_lettered = meter.create_counter(
            "amb.messages.dead_lettered",
            unit="{message}",
            description="Messages given up, by reason.",
        )
        self.handler_duration = meter.create_histogram(
            "amb.handler.duration", unit="s", description="Time a handler call took."
        )
        self.request_duration = meter.create_histogram(
            "amb.request.duration",
            unit="s",
            description="bus.request from publishing to the reply or the error.",
        )
        self.in_flight = meter.create_up_down_counter(
            "amb.handlers.active", unit="{call}", description="Handler calls running now."
        )


def subscription_attributes(system: str, pattern: str, group: str | None) -> dict[str, str]:
    """The bounded attributes of a subscription's metrics."""
    attributes = {sc.SYSTEM: system, sc.TEMPLATE: pattern}
    if group is not None:
        attributes[sc.GROUP] = group
    return attributes
