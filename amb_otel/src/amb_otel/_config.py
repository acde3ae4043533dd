"""Switching the plugin off without uninstalling it.

``AMB_OTEL=off`` (or ``0``, ``false``, ``no``, ``disabled``) in the environment, read when the
plugin's hook runs (once per process, at the first bus), makes the plugin register nothing: no
layer, no log correlation, not one extra call per message. One bus leaves it out with
``MessageBus(plugin_middleware=False)``.
"""

from __future__ import annotations

import os
from typing import Final

ENV_VAR: Final = "AMB_OTEL"
_OFF: Final = frozenset({"0", "off", "false", "no", "disabled"})


def enabled() -> bool:
    """False when ``AMB_OTEL`` says off."""
    return os.environ.get(ENV_VAR, "").strip().lower() not in _OFF
