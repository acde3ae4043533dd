"""The README's Python examples, split by what they need.

An example whose first line is ``# backend: <name>`` needs that backend's broker: the backend's own
test folder runs it with ``AMB_URL`` pointing at the broker its fixtures found. Every other example
runs in the core tests with nothing but ``agent-message-bus``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"
_BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
_MARK = re.compile(r"# (?:backend|needs): (\w+)\n")


def examples(backend: str | None) -> list[str]:
    """The examples that need ``backend`` (``None``: those that need no broker)."""
    found = []
    for block in _BLOCKS:
        mark = _MARK.match(block)
        if (mark.group(1) if mark else None) == backend:
            found.append(block)
    return found


def run_example(source: str, tmp_path: Path, env: Mapping[str, str] | None = None) -> str:
    """Run one example as a script; fail with its stderr unless it exits 0 and prints something."""
    script = tmp_path / "example.py"
    script.write_text(source)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "every example prints what it shows"
    return done.stdout
