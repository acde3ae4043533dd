"""What differs between the soak's modes: the broker, the transport's options, and how long it runs.

Each mode uses the transport's documented defaults except where a default would only slow the soak
down or measure something else:

- Redis Streams: ``maxlen=0`` (keep every entry). The default cap of 100,000 entries per stream is a
  retention choice, not a fault: at 100,000 messages it could trim the oldest entries, and with them
  a killed consumer's pending ones, which the soak would then count as lost.
- NATS JetStream: ``storage=file`` (the default, stated for clarity), so the streams outlive a
  SIGKILL of the server.
- Kafka: ``session_timeout_ms=6000`` so that a SIGKILLed consumer's partition moves to its successor
  within seconds (the default, 10 s, only makes the run longer); ``metadata_refresh_ms=1000``; and
  200 publishers with ``linger_ms=20``, so that the records travel in large batches. Tansu's S3
  storage keeps one object per record batch and lists every object of the partition on each fetch:
  with 16 publishers (batches of about 16 records) consumers read nothing at all once some ten
  thousand records are stored (measured with a raw confluent-kafka consumer: 0 records in 300 s at
  15,000 records, 7 records/s at 6,000), while batches of about 250 records keep 100,000 records in
  a few hundred objects. ``fetch_wait_max_ms=1000``: Tansu answers a fetch whose storage read
  outlasts the fetch's max wait with no records at all, and listing a few hundred objects on moto
  takes longer than the default 100 ms: with it and small batches (16 publishers), the consumer
  fetched the same offset for minutes and got nothing, while a raw confluent-kafka consumer at that
  offset got records with 500 ms and none with 100 ms. With today's large batches the default no
  longer stalls, but it drains about four times slower (3 December 2026: 82 s against 3 s).
  ``partitions=1`` (the bus's default became 4 that day): the figures above were measured with one
  partition, and keyless records spread over 4 would cut each batch, and each S3 object, in four.
- SQS: ``wait=1`` (one-second long polls), so that closing the consumer at the end is quick.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlencode

import attrs

from . import brokers

__all__ = ["MODES", "Mode"]


@attrs.frozen
class Mode:
    """One durable mode of one backend.

    :param name: what the command line calls it.
    :param title: what the report calls it.
    :param start: starts the broker processes.
    :param options: the transport's query options (added to the broker's URL).
    :param publishers: concurrent publisher tasks, each awaiting one publish at a time.
    :param timed: publish for a time (SQS on moto) rather than a count.
    """

    name: str
    title: str
    start: Callable[[], brokers.Broker]
    options: Mapping[str, str]
    publishers: int = 16
    timed: bool = False

    def url(self, broker: brokers.Broker, run_id: str) -> str:
        """The AMB URL the publisher, the collector and the consumer use."""
        options = {k: v.format(run=run_id) for k, v in self.options.items()}
        sep = "&" if "?" in broker.url else "?"
        return broker.url + sep + urlencode(options)


MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode(
            "redis",
            "Redis Streams (AOF, appendfsync always)",
            brokers.start_redis,
            {"mode": "streams", "namespace": "soak{run}", "maxlen": "0"},
        ),
        Mode(
            "nats",
            "NATS JetStream (file storage)",
            brokers.start_nats,
            {"mode": "jetstream", "storage": "file", "stream_prefix": "SOAK{run}"},
        ),
        Mode(
            "kafka",
            "Kafka on Tansu (S3 storage on moto)",
            brokers.start_tansu_s3,
            {
                "session_timeout_ms": "6000",
                "metadata_refresh_ms": "1000",
                "linger_ms": "20",
                "fetch_wait_max_ms": "1000",
                "partitions": "1",
            },
            publishers=200,
        ),
        Mode(
            "sqs",
            "SQS + SNS on moto (no broker restarts)",
            brokers.start_moto_sqs,
            {"namespace": "soak{run}", "wait": "1"},
            timed=True,
        ),
    )
}
