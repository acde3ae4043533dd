"""Installing the core must not change another project's test run: its pytest plugin adds fixtures
and an option, and parametrizes the event loop only when a project opts in. Each case runs a small
project with pytester in a subprocess, where the installed plugin loads through its entry point as
it would downstream."""

from __future__ import annotations

import re

import pytest

pytest_plugins = ["pytester"]

OWN_FIXTURE = """
import pytest, sniffio

@pytest.fixture
def anyio_backend():
    return "trio"

@pytest.mark.anyio
async def test_runs_on_the_projects_choice():
    assert sniffio.current_async_library() == "trio"
"""

OWN_PARAMETRIZATION = """
import pytest, sniffio

@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_both(anyio_backend):
    assert sniffio.current_async_library() == anyio_backend
"""

LOOPS = """
import pytest, sniffio

@pytest.mark.anyio
async def test_loop():
    print("LOOP", sniffio.current_async_library())
"""


def _outcome(pytester: pytest.Pytester, *args: str) -> tuple[dict[str, int], list[str]]:
    result = pytester.runpytest_subprocess("-s", *args)
    return result.parseoutcomes(), sorted(re.findall(r"LOOP \w+", result.stdout.str()))


@pytest.mark.parametrize(
    ("source", "passed"), [(OWN_FIXTURE, 1), (OWN_PARAMETRIZATION, 2), (LOOPS, None)]
)
def test_a_downstream_run_is_the_same_with_or_without_amb(
    pytester: pytest.Pytester, source: str, passed: int | None
) -> None:
    """A project's own ``anyio_backend`` fixture, its own parametrization, and anyio's default:
    each runs exactly as it does with AMB's plugin blocked (``-p no:amb``)."""
    pytester.makepyfile(source)
    with_amb = _outcome(pytester)
    assert with_amb == _outcome(pytester, "-p", "no:amb")
    if passed is not None:
        assert with_amb[0] == {"passed": passed}


def test_opting_in_on_the_command_line_runs_every_loop(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(LOOPS)
    assert _outcome(pytester, "--amb-loop", "all") == (
        {"passed": 2},
        ["LOOP asyncio", "LOOP trio"],
    )
    assert _outcome(pytester, "--amb-loop", "trio") == ({"passed": 1}, ["LOOP trio"])


def test_opting_in_through_the_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\namb_loop = trio\n")
    pytester.makepyfile(
        """
import pytest, sniffio

@pytest.mark.anyio
async def test_loop():
    assert sniffio.current_async_library() == "trio"
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_a_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\namb_loop = curio\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*amb_loop must be one of asyncio, trio, all*curio*"])


def test_the_fixtures_are_there_to_use(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.anyio
async def test_memory_bus(memory_bus):
    got = []
    await memory_bus.subscribe("t", got.append)
    await memory_bus.publish("t", 1)
    reply_free = await memory_bus.publish("t", 2)
    assert reply_free.topic == "t"

def test_factory(memory_transport_factory):
    assert memory_transport_factory().hub is memory_transport_factory().hub
"""
    )
    pytester.runpytest_subprocess("--amb-loop", "asyncio").assert_outcomes(passed=2)
