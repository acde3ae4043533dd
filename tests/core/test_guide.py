"""The guide for backend and plugin authors (docs/writing-a-backend.md) shows real code: a block
marked ``<!-- file: PATH -->`` is that file, whole; one marked ``<!-- from: PATH -->`` is a part of
it, line for line (an excerpt from inside a class is shown dedented, and ruff's formatting of the
guide may add blank lines between its functions). So the worked example the guide teaches is the code the tests run (the conformance suite
in test_conformance_tiny.py, the entry point in tests/packaging/test_plugin_entry_points.py)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

GUIDE = ROOT / "docs" / "writing-a-backend.md"
TEXT = GUIDE.read_text()
BLOCKS = re.findall(r"<!-- (file|from): (\S+) -->\n```\w*\n(.*?)```", TEXT, flags=re.S)
ANCHORS = sorted(set(re.findall(r"\]\(#([^)]+)\)", TEXT)))
LINKS = sorted(set(re.findall(r"\]\(((?:\.\./|[\w-]+\.md)[^)#]*)", TEXT)))


def test_the_guide_shows_the_worked_example_whole() -> None:
    whole = {path for kind, path, _ in BLOCKS if kind == "file"}
    assert whole == {
        "tests/tiny_plugin/pyproject.toml",
        "tests/tiny_plugin/src/amb_tiny/transport.py",
        "tests/core/test_conformance_tiny.py",
    }
    assert len(BLOCKS) == TEXT.count("<!-- file: ") + TEXT.count("<!-- from: "), (
        "a marker fits no block"
    )


@pytest.mark.parametrize(("kind", "path", "code"), BLOCKS, ids=[f"{k}:{p}" for k, p, _ in BLOCKS])
def test_a_quoted_block_is_the_code_it_names(kind: str, path: str, code: str) -> None:
    source = (ROOT / path).read_text()
    if kind == "file":
        assert code == source, f"the guide's copy of {path} differs from the file: copy it again"
    else:
        assert _is_excerpt(code, source), (
            f"the guide's excerpt of {path} is not in the file: copy it"
        )


def _is_excerpt(code: str, source: str) -> bool:
    """True when the code's non-blank lines are consecutive non-blank lines of the source, each
    with the same extra indentation."""
    want = [line for line in code.splitlines() if line.strip()]
    have = [line for line in source.splitlines() if line.strip()]
    for start in range(len(have) - len(want) + 1):
        indent = have[start][: len(have[start]) - len(want[0])]
        if not indent.strip() and all(
            got == indent + line for got, line in zip(have[start:], want, strict=False)
        ):
            return True
    return False


@pytest.mark.parametrize("link", LINKS)
def test_relative_links_lead_somewhere(link: str) -> None:
    assert (GUIDE.parent / link).exists(), link


def test_anchors_name_a_section() -> None:
    headings = [line.lstrip("#").strip() for line in TEXT.splitlines() if line.startswith("#")]
    slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
    assert ANCHORS and set(ANCHORS) <= slugs, sorted(set(ANCHORS) - slugs)
