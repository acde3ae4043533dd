"""Plugin discovery: built-ins through the same hooks, entry points, failures and blocking."""

from __future__ import annotations

import ast
import logging
import re
import sys
import types
from importlib import metadata

import pluggy
import pytest

from amb_core import MessageBus, PluginError, UnknownSchemeError, hookimpl
from amb_core import plugins as plugin_module
from amb_core.memory import MemoryTransport
from amb_core.plugins import DISABLE_ENV, TransportRegistry, registries, reset_plugins
from tests.conftest import ROOT, TINY_PLUGIN, hookspec_names

GUIDE = ROOT / "docs" / "writing-a-backend.md"


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


def test_every_hook_has_an_entry_point_test_and_a_section_in_the_guide() -> None:
    """A hook added to amb_core.hookspecs fails here until the example plugin implements it (the
    packaging test installs that plugin with its entry point into a fresh venv), the script run
    there has a ``prove_<hook>`` check that it took effect, and the guide gives it a section."""
    from amb_tiny import plugin as tiny_plugin

    from amb_core import hookspecs

    hooks = hookspec_names()
    assert len(hooks) >= 4, hooks
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(tiny_plugin)  # raises for a hookimpl that matches no hookspec
    pyproject = (TINY_PLUGIN / "pyproject.toml").read_text()
    assert re.search(
        r'^\[project\.entry-points\.amb\]\n(.*\n)*?tiny = "amb_tiny\.plugin"$', pyproject, re.M
    )
    check = ast.parse((ROOT / "tests" / "packaging" / "tiny_plugin_check.py").read_text())
    provers = {node.name for node in check.body if isinstance(node, ast.AsyncFunctionDef)}
    headings = [line for line in GUIDE.read_text().splitlines() if line.startswith("#")]
    for name in hooks:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"
        implementations = [i.plugin for i in getattr(manager.hook, name).get_hookimpls()]
        assert implementations == [tiny_plugin], f"the example plugin does not implement {name}"
        assert f"prove_{name}" in provers, f"tiny_plugin_check.py does not prove {name}"
        assert any(f"`{name}`" in line for line in headings), f"no section of the guide on {name}"
