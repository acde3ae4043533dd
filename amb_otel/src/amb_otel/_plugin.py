"""The ``amb`` entry point: one :class:`~amb_otel.OtelMiddleware` for every bus of the process, and
trace ids on the core's log records; nothing at all when ``AMB_OTEL=off`` (see :mod:`._config`)."""

from __future__ import annotations

from amb_core import hookimpl
from amb_core.plugins import MiddlewareRegistry

from ._config import enabled
from ._logging import install_log_correlation
from .middleware import OtelMiddleware


@hookimpl
def amb_register_middleware(registry: MiddlewareRegistry) -> None:
    if not enabled():
        return
    install_log_correlation()
    registry.add(OtelMiddleware())
