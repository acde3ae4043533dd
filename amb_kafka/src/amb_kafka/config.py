"""``kafka://`` URLs and keyword options, turned into librdkafka configuration.

Format: ``kafka://[user:password@]host:port[,host:port...][?option=value&...]``.

AMB's own options (underscored names): ``partitions`` (for topics the bus creates, default
:data:`DEFAULT_PARTITIONS`; a consumer group shares a topic's work only up to its number of
partitions; reply inboxes get 1),
``replication`` (default 1), ``connect_timeout`` (seconds, default 5), ``publish_timeout`` (seconds,
default 15: the bound on every publish, librdkafka's ``message.timeout.ms``; a publish that the
broker has not confirmed by then raises), ``commit_interval`` (seconds
between commits of handled offsets, default 0.1), ``session_timeout_ms``, ``fetch_wait_max_ms``,
``metadata_refresh_ms`` (how soon a wildcard subscription sees a new topic), ``linger_ms``,
``security_protocol``, ``sasl_mechanism``. Any option whose name contains a dot
(``socket.keepalive.enable=true``) goes to librdkafka unchanged, for producer and consumer alike.
User and password in the URL become SASL credentials (``SASL_PLAINTEXT``/``PLAIN`` unless told
otherwise); they never appear in :attr:`KafkaConfig.description`, reprs, errors or logs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import attrs

from amb_core.errors import ConfigurationError
from amb_core.options import Option, parse_options
from amb_core.urls import redact_url, split_url

__all__ = ["DEFAULT_PARTITIONS", "SPEC", "KafkaConfig"]

DEFAULT_PARTITIONS = 4
"""Partitions of the topics the bus creates. A group shares a topic by partition, so with 1 (Kafka's
own default) a second member sits idle; 4 shares evenly among 1, 2 or 4 members and lets a group of 3
work too. Not more: every partition costs the broker a log and the consumers a fetch per round (on
Tansu over S3 a listing per fetch), and order holds only per key, so more partitions buy nothing for
a small group. A topic can gain partitions later (Kafka's tools), never lose them; set
``partitions=`` for bigger groups, ``partitions=1`` for one topic-wide order."""

#: AMB's options for ``kafka://`` (query string or keyword arguments). A name with a dot, and
#: ``debug``, go to librdkafka unchanged.
SPEC = (
    Option("partitions", int, low=1),
    Option("replication", int, low=1),
    Option("session_timeout_ms", int, low=1),
    Option("fetch_wait_max_ms", int, low=0),
    Option("metadata_refresh_ms", int, low=1),
    Option("linger_ms", int, low=0),
    Option("connect_timeout", float, low=1e-3),
    Option("commit_interval", float, low=0),
    Option("publish_timeout", float, low=1e-3),
    Option("security_protocol", str),
    Option("sasl_mechanism", str),
    Option("client_id", str),
    Option("username", str),
    Option("sasl_username", str),
    Option("password", str, secret=True),
    Option("sasl_password", str, secret=True),
)
_CREDENTIALS = {"username": 0, "sasl_username": 0, "password": 1, "sasl_password": 1}


def _librdkafka_option(name: str) -> bool:
    return "." in name or name == "debug"


@attrs.frozen
class KafkaConfig:
    """Everything a :class:`~amb_kafka.transport.KafkaTransport` needs, credentials kept aside."""

    url: str = attrs.field(repr=False)
    bootstrap: str
    username: str | None = attrs.field(default=None, repr=False)
    password: str | None = attrs.field(default=None, repr=False)
    partitions: int = DEFAULT_PARTITIONS
    replication: int = 1
    connect_timeout: float = 5.0
    publish_timeout: float = 15.0
    commit_interval: float = 0.1
    session_timeout_ms: int = 10_000
    fetch_wait_max_ms: int = 100
    metadata_refresh_ms: int = 2_000
    linger_ms: int = 5
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    client_id: str = "amb"
    extra: dict[str, str] = attrs.field(factory=dict, repr=False)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> KafkaConfig:
        """Parse ``url``; keyword ``options`` win over the query string.

        :raises ConfigurationError: for a URL that is not ``kafka://`` or an option of the wrong type;
            the message shows the URL redacted.
        """
        parts = split_url(url, "Kafka", ("kafka",))
        hosts = parts.netloc.rpartition("@")[2]
        if not hosts:
            raise ConfigurationError(f"Kafka URL names no broker: {redact_url(url)}")
        username = password = None
        if "@" in parts.netloc:
            userinfo = parts.netloc.rpartition("@")[0]
            user, _, secret = userinfo.partition(":")
            username, password = unquote(user), unquote(secret)
        fields: dict[str, Any] = {}
        extra: dict[str, str] = {}
        parsed = parse_options("Kafka", SPEC, url, options, passthrough=_librdkafka_option)
        for key, value in parsed.items():
            if key in _CREDENTIALS:
                if _CREDENTIALS[key]:
                    password = value
                else:
                    username = value
            elif _librdkafka_option(key):
                extra[key] = str(value)
            else:
                fields[key] = value
        return cls(
            url=url,
            bootstrap=hosts,
            username=username,
            password=password,
            extra=extra,
            **fields,
        )

    @property
    def description(self) -> str:
        """The URL with credentials replaced by ``***``."""
        return redact_url(self.url)

    def common(self) -> dict[str, Any]:
        """librdkafka settings shared by producer, consumer and admin client."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "client.id": self.client_id,
            "socket.connection.setup.timeout.ms": max(1000, int(self.connect_timeout * 1000)),
            "log_level": 7
            if "debug" in self.extra
            else 3,  # errors only: librdkafka's reconnect chatter is not the user's business
        }
        if self.username is not None:
            conf["security.protocol"] = self.security_protocol or "SASL_PLAINTEXT"
            conf["sasl.mechanism"] = self.sasl_mechanism or "PLAIN"
            conf["sasl.username"] = self.username
            conf["sasl.password"] = self.password or ""
        elif self.security_protocol:
            conf["security.protocol"] = self.security_protocol
        conf.update(self.extra)
        return conf

    @property
    def max_message_bytes(self) -> int:
        """The largest record the producer sends: librdkafka's ``message.max.bytes`` (default
        1,000,000), as configured."""
        return int(self.extra.get("message.max.bytes", 1_000_000))

    def producer(self) -> dict[str, Any]:
        """Producer settings: acknowledged by all replicas, idempotent (no reordering on retry),
        every message confirmed or failed within ``publish_timeout``.

        A message without a key goes to a partition picked at random for it alone (sticky
        partitioning off): librdkafka's default keeps every keyless record produced within
        ``2 x linger_ms`` on one partition, so a ``publish_many`` of keyless messages landed on one
        partition and a group of two had one member take all of it."""
        return {
            **self.common(),
            "acks": "all",
            "enable.idempotence": True,
            "sticky.partitioning.linger.ms": 0,
            "linger.ms": self.linger_ms,
            "message.timeout.ms": max(1, int(self.publish_timeout * 1000)),
            **self.extra,
        }

    def consumer(self, group: str) -> dict[str, Any]:
        """Consumer settings: manual commits of handled offsets only."""
        return {
            **self.common(),
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": max(100, self.session_timeout_ms // 4),
            "fetch.wait.max.ms": self.fetch_wait_max_ms,
            "topic.metadata.refresh.interval.ms": self.metadata_refresh_ms,
            **self.extra,
        }
