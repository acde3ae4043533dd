"""Plugin discovery: built-ins through the same hooks, entry points, failures and blocking."""

from __future__ import annotations

import logging
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest

from amb_core import MessageBus, PluginError, UnknownSchemeError, hookimpl
from amb_core import plugins as plugin_module
from amb_core.memory import MemoryTransport
from amb_core.plugins import DISABLE_ENV, TransportRegistry, registries, reset_plugins


@pytest.fixture(autouse=True)
def _fresh_plugins():
    reset_plugins()
    yield
    reset_plugins()


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: metadata.EntryPoint) -> None:
    real = metadata.entry_points

    def entry_points(**selection: str):  # type: ignore[no-untyped-def]
        if selection.get("group") == "amb":
            return metadata.EntryPoints(eps)
        return real(**selection)

    monkeypatch.setattr(plugin_module.metadata, "entry_points", entry_points)


def _module(name: str, **attrs: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


class FakeTransport(MemoryTransport):
    scheme = "fake"


def test_memory_registers_through_the_hook() -> None:
    entry = registries().transports.get("memory")
    assert entry.factory is MemoryTransport and entry.distribution == "agent-message-bus"
    assert isinstance(MessageBus.from_url("memory://").transport, MemoryTransport)


def test_unknown_scheme_names_the_distribution_to_install() -> None:
    with pytest.raises(UnknownSchemeError, match=r"agent-message-bus\[kafka\]"):
        registries().transports.get("kafka")
    with pytest.raises(UnknownSchemeError, match="installed schemes: memory"):
        MessageBus.from_url("gopher://x")


def test_entry_point_plugin_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    @hookimpl
    def amb_register_transports(registry: TransportRegistry) -> None:
        registry.add("fake", FakeTransport, distribution="amb-fake")

    _module("amb_fake_plugin", amb_register_transports=amb_register_transports)
    _fake_entry_points(monkeypatch, metadata.EntryPoint("fake", "amb_fake_plugin", "amb"))
    entry = registries().transports.get("fake")
    assert entry.factory is FakeTransport and entry.version == "unknown"


def test_broken_plugin_is_logged_and_skipped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_entry_points(monkeypatch, metadata.EntryPoint("broken", "amb_no_such_module_xyz", "amb"))
    with caplog.at_level(logging.WARNING, logger="amb.plugins"):
        assert "memory" in registries().transports.entries
    assert "broken" in caplog.text and "skipped" in caplog.text


def test_env_blocks_named_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    @hookimpl
    def amb_register_transports(registry: TransportRegistry) -> None:
        registry.add("fake", FakeTransport, distribution="amb-fake")

    _module("amb_fake_plugin2", amb_register_transports=amb_register_transports)
    _fake_entry_points(monkeypatch, metadata.EntryPoint("fake", "amb_fake_plugin2", "amb"))
    monkeypatch.setenv(DISABLE_ENV, "other, fake")
    assert "fake" not in registries().transports.entries


def test_duplicate_scheme_is_a_plugin_error(monkeypatch: pytest.MonkeyPatch) -> None:
    @hookimpl
    def amb_register_transports(registry: TransportRegistry) -> None:
        registry.add("memory", FakeTransport, distribution="amb-fake")

    _module("amb_dup_plugin", amb_register_transports=amb_register_transports)
    _fake_entry_points(monkeypatch, metadata.EntryPoint("dup", "amb_dup_plugin", "amb"))
    with pytest.raises(PluginError, match="registered twice"):
        registries()


def test_misspelled_hook_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    @hookimpl
    def amb_register_transport(registry: TransportRegistry) -> None:  # missing "s"
        pass

    _module("amb_typo_plugin", amb_register_transport=amb_register_transport)
    _fake_entry_points(monkeypatch, metadata.EntryPoint("typo", "amb_typo_plugin", "amb"))
    with pytest.raises(Exception, match="amb_register_transport"):
        registries()


def test_every_hook_is_documented_and_tested() -> None:
    from amb_core import hookspecs

    hooks = [name for name in dir(hookspecs) if name.startswith("amb_")]
    assert hooks == [
        "amb_register_dead_letter_handlers",
        "amb_register_middleware",
        "amb_register_routers",
        "amb_register_transports",
    ]
    here = Path(__file__)
    source = "".join(
        (here.parent / name).read_text()
        for name in ("test_plugins.py", "test_readme.py", "test_middleware.py")
    )
    readme = (here.parents[2] / "README.md").read_text()
    for name in hooks:
        assert getattr(hookspecs, name).__doc__.strip(), name
        assert name in source or name in readme, f"{name} has no test"
