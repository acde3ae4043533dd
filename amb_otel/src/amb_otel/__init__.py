"""OpenTelemetry for AMB: traces that cross agents and brokers, metrics, trace ids in the logs.

Installed (``pip install "agent-message-bus[otel]"``), the plugin adds an :class:`OtelMiddleware`
to every bus through the core's ``amb_register_middleware`` hook; it needs only the OpenTelemetry
API, and records nothing until the application configures an SDK. ``AMB_OTEL=off`` turns it off
for the process, ``MessageBus(plugin_middleware=False)`` for one bus. See docs/observability.md.
"""

from __future__ import annotations

from ._config import ENV_VAR, enabled
from ._logging import TraceContextFilter, install_log_correlation, uninstall_log_correlation
from .middleware import OtelMiddleware

__all__ = [
    "ENV_VAR",
    "OtelMiddleware",
    "TraceContextFilter",
    "enabled",
    "install_log_correlation",
    "uninstall_log_correlation",
]
