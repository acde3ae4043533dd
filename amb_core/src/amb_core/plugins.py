"""Plugin loading and the registries the hooks fill.

Built-in plugins load exactly like external ones. External plugins are found through the ``amb``
entry-point group; one that fails to import is logged and skipped (a broken optional backend must not
break the bus), and ``AMB_DISABLE_PLUGINS=name1,name2`` blocks entry points by name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from . import hookspecs
from .errors import PluginError, UnknownSchemeError

if TYPE_CHECKING:
    from .deadletter import DeadLetterHandler
    from .middleware import Middleware
    from .routing import Rule
    from .transport import Transport

__all__ = [
    "DISABLE_ENV",
    "DeadLetterRegistry",
    "MiddlewareRegistry",
    "Registries",
    "RouterRegistry",
    "TransportEntry",
    "TransportRegistry",
    "get_plugin_manager",
    "hookimpl",
    "registries",
    "reset_plugins",
]

log = logging.getLogger("amb.plugins")
hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)
DISABLE_ENV = "AMB_DISABLE_PLUGINS"
ENTRY_POINT_GROUP = "amb"

#: Which distribution serves a scheme that is not installed, for the error message.
SCHEME_HINTS = {
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "redis+cluster": "redis",
    "rediss+cluster": "redis",
    "nats": "nats",
    "tls": "nats",
    "kafka": "kafka",
    "kafka+ssl": "kafka",
    "kafka+sasl": "kafka",
    "sqs": "sqs",
}


@attrs.frozen
class TransportEntry:
    """A registered transport: its scheme, class and where it came from."""

    scheme: str
    factory: Any
    distribution: str
    version: str

    def create(self, url: str, **options: Any) -> Transport:
        """Build a transport for ``url``."""
        transport: Transport = self.factory.from_url(url, **options)
        return transport


class TransportRegistry:
    """URL scheme -> transport class, filled by ``amb_register_transports``."""

    def __init__(self) -> None:
        self.entries: dict[str, TransportEntry] = {}

    def add(self, scheme: str, factory: Any, *, distribution: str) -> None:
        """Register ``factory`` (a class with ``from_url``) for ``scheme``.

        :raises PluginError: for a duplicate scheme or a factory without ``from_url``.
        """
        scheme = scheme.lower()
        if scheme in self.entries:
            other = self.entries[scheme].distribution
            raise PluginError(f"scheme {scheme!r} registered twice ({other} and {distribution})")
        if not callable(getattr(factory, "from_url", None)):
            raise PluginError(f"transport factory for {scheme!r} has no from_url(url, **options)")
        try:
            version = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            version = "unknown"
        self.entries[scheme] = TransportEntry(scheme, factory, distribution, version)

    def get(self, scheme: str) -> TransportEntry:
        """The entry for ``scheme``.

        :raises UnknownSchemeError: naming the distribution to install when one is known.
        """
        entry = self.entries.get(scheme.lower())
        if entry is None:
            raise UnknownSchemeError(scheme, SCHEME_HINTS.get(scheme.lower()), list(self.entries))
        return entry


class RouterRegistry:
    """Rule-set name -> rules, filled by ``amb_register_routers``."""

    def __init__(self) -> None:
        self.rule_sets: dict[str, list[Rule]] = {}

    def add(self, name: str, rules: Iterable[Rule]) -> None:
        """Register a named rule set.

        :raises PluginError: when the name is taken.
        """
        if name in self.rule_sets:
            raise PluginError(f"rule set {name!r} registered twice")
        self.rule_sets[name] = list(rules)

    def get(self, name: str) -> list[Rule]:
        """The rules called ``name``.

        :raises PluginError: when no plugin registered that name.
        """
        try:
            return self.rule_sets[name]
        except KeyError:
            known = ", ".join(sorted(self.rule_sets)) or "none"
            raise PluginError(f"no rule set named {name!r} (registered: {known})") from None


class DeadLetterRegistry:
    """The dead-letter handlers every bus calls by default, in registration order."""

    def __init__(self) -> None:
        self.handlers: list[DeadLetterHandler] = []

    def add(self, handler: DeadLetterHandler) -> None:
        """Append a handler.

        :raises PluginError: when it is not callable.
        """
        if not callable(handler):
            raise PluginError(f"dead-letter handler {handler!r} is not callable")
        self.handlers.append(handler)


class MiddlewareRegistry:
    """The publish/receive middleware of every bus that does not set its own, outermost first."""

    def __init__(self) -> None:
        self.layers: list[Middleware] = []

    def add(self, middleware: Middleware) -> None:
        """Append a layer (it wraps inside the ones added before it).

        :raises PluginError: when it is not a :class:`~amb_core.middleware.Middleware`.
        """
        from .middleware import Middleware

        if not isinstance(middleware, Middleware):
            raise PluginError(f"{middleware!r} is not an amb_core.middleware.Middleware instance")
        self.layers.append(middleware)


@attrs.frozen
class Registries:
    """Everything the hooks registered."""

    transports: TransportRegistry
    routers: RouterRegistry
    dead_letters: DeadLetterRegistry
    middleware: MiddlewareRegistry


_manager: pluggy.PluginManager | None = None
_registries: Registries | None = None


def _blocked() -> set[str]:
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    blocked = _blocked()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in blocked:
            log.info("plugin %r blocked by %s", ep.name, DISABLE_ENV)
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken optional plugin must not break the bus
            log.warning(
                "plugin %r (%s) failed to import and is skipped: %r", ep.name, ep.value, exc
            )
            continue
        pm.register(plugin, name=ep.name)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with built-in and entry-point plugins loaded."""
    global _manager
    if _manager is None:
        from . import _builtin

        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        pm.register(_builtin, name="amb-builtin")
        _load_entry_points(pm)
        pm.check_pending()
        _manager = pm
    return _manager


def _call(hook: Callable[..., Any], registry: Any, what: str) -> None:
    try:
        hook(registry=registry)
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(f"a plugin failed while registering {what}: {exc!r}") from exc


def registries() -> Registries:
    """Call the registration hooks once and return what they registered."""
    global _registries
    if _registries is None:
        pm = get_plugin_manager()
        found = Registries(
            TransportRegistry(), RouterRegistry(), DeadLetterRegistry(), MiddlewareRegistry()
        )
        _call(pm.hook.amb_register_transports, found.transports, "transports")
        _call(pm.hook.amb_register_routers, found.routers, "routers")
        _call(pm.hook.amb_register_dead_letter_handlers, found.dead_letters, "dead-letter handlers")
        _call(pm.hook.amb_register_middleware, found.middleware, "middleware")
        _registries = found
    return _registries


def register_plugin(plugin: ModuleType | object, name: str | None = None) -> None:
    """Register a plugin object by hand (tests, applications) and rebuild the registries."""
    global _registries
    get_plugin_manager().register(plugin, name=name)
    _registries = None


def reset_plugins() -> None:
    """Forget loaded plugins and registries (tests that change the environment)."""
    global _manager, _registries
    _manager = None
    _registries = None
