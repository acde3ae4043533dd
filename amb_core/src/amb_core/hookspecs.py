"""Every hook AMB calls, in one module (pluggy project ``"amb"``, entry-point group ``"amb"``).

Hooks are synchronous and only *register* things on the registry object they are handed: async work
lives on the objects they register (transports, dead-letter handlers), because pluggy has no async
hooks and registration must not depend on a running event loop. Each hook is called once per
process, when the registries are first needed, for every plugin: the built-in ones
(:mod:`amb_core._builtin`) exactly like a third-party distribution's.

Write an implementation with :data:`amb_core.hookimpl` and expose its module under the ``amb``
entry-point group::

    [project.entry-points.amb]
    mybackend = "mypackage.plugin"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .plugins import (
        DeadLetterRegistry,
        MiddlewareRegistry,
        RouterRegistry,
        TransportRegistry,
    )

__all__ = ["PROJECT", "hookspec"]

PROJECT = "amb"
hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def amb_register_transports(registry: TransportRegistry) -> None:
    """Register transports by URL scheme.

    Called once per process, for every plugin, before the first ``MessageBus.from_url``.

    :param registry: call ``registry.add(scheme, transport_class, distribution=...)``; the class
        must provide ``from_url(url, **options)``. A scheme registered twice is a
        :class:`~amb_core.errors.PluginError`.
    """


@hookspec
def amb_register_routers(registry: RouterRegistry) -> None:
    """Contribute named content-routing rule sets.

    Called once per process, for every plugin, before the first named rule set is looked up.

    :param registry: call ``registry.add(name, rules)`` with a list of
        :class:`~amb_core.routing.Rule`; ``bus.route(source, rules=name)`` then uses them.
    """


@hookspec
def amb_register_dead_letter_handlers(registry: DeadLetterRegistry) -> None:
    """Register handlers for messages that end as dead letters.

    Called once per process, for every plugin; every registered handler is called, in
    registration order, for each dead letter on every bus that does not set its own list. Every
    handler must succeed for the letter to count as stored: one that raises leaves the message
    unsettled (an at-least-once transport delivers it again, and every handler sees the letter
    again), so handlers must be idempotent. See :mod:`amb_core.deadletter`.

    :param registry: call ``registry.add(handler)`` with a
        :class:`~amb_core.deadletter.DeadLetterHandler` (an async callable taking the
        :class:`~amb_core.deadletter.DeadLetter` and the bus). The built-in handler publishes to
        ``dlq.<topic>``.
    """


@hookspec
def amb_register_middleware(registry: MiddlewareRegistry) -> None:
    """Contribute publish/receive middleware (tracing, metrics, audit, signing).

    Called once per process, for every plugin; every bus uses the registered layers, in
    registration order, the first outermost, outside the bus's own ``middleware`` list (unless it
    is made with ``plugin_middleware=False``). A layer that needs per-bus state returns a copy from
    :meth:`~amb_core.middleware.Middleware.for_bus`.

    :param registry: call ``registry.add(layer)`` with an
        :class:`~amb_core.middleware.Middleware` instance. Instances are shared by every bus of the
        process, so keep per-bus state out of them.
    """
