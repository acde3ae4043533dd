"""Reading a Redis URL: AMB's own options out of the query string, the rest for redis-py.

``redis://[user:password@]host[:port][/db]?mode=streams&namespace=amb&maxlen=100000``; ``rediss://``
(TLS) and ``unix://`` work as in redis-py. ``redis+cluster://[user:password@]host:port,host2:port2``
(``rediss+cluster://`` for TLS) selects a Redis Cluster: several seed nodes, any one of which
suffices to find the others (:mod:`._seeds`); see :attr:`RedisConfig.cluster` for the key layout.
AMB's options (also accepted as keyword arguments, which win over the URL) are removed before the
URL reaches redis-py, and the password is kept out of every description, repr, log line and error
(:attr:`RedisConfig.description`).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import SplitResult, urlencode, urlsplit, urlunsplit

import attrs

from amb_core.errors import ConfigurationError
from amb_core.options import Option, parse_options
from amb_core.urls import redact_url, split_url

from ._seeds import split_seeds

__all__ = ["SPEC", "Mode", "RedisConfig"]

Mode = Literal["streams", "pubsub"]

#: AMB's options (query string or keyword arguments); redis-py's own URL options pass through.
SPEC = (
    Option("mode", str, choices=("streams", "pubsub")),
    Option("namespace", str),
    Option("maxlen", int, low=0),
    Option("discover", float, low=1e-3),
    Option("scan", int, low=0),
    Option("block", float, low=1e-3),
    Option("connect_timeout", float, low=1e-3),
    Option("publish_timeout", float, low=1e-3),
    Option("heartbeat", float, low=1e-3),
    Option("batch", int, low=1),
    Option("wait_replicas", int, low=0),
    Option("wait_timeout", float, low=1e-3),
    Option("pubsub", str, choices=("sharded", "classic")),
)
_OURS = frozenset(o.name for o in SPEC)
_DRIVER_KWARGS = frozenset({"client_name", "username", "password", "ssl_cert_reqs", "ssl_ca_certs"})
_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_SCHEMES = ("redis", "rediss", "unix", *_CLUSTER_SCHEMES)
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


@attrs.frozen(repr=False)
class RedisConfig:
    """Everything the transport needs to know, parsed and checked once.

    :param url: the URL for redis-py (AMB's options removed; holds the password, never printed).
    :param mode: ``"streams"`` (durable, the default) or ``"pubsub"`` (lowest latency).
    :param namespace: prefix of every key and channel (``<namespace>:<topic>``).
    :param maxlen: approximate cap per topic stream (``XADD MAXLEN ~``); ``0`` keeps everything.
    :param discover: seconds between checks for new streams matching a wildcard subscription.
    :param scan: keys a wildcard subscription's ``SCAN`` step visits per ``discover`` tick, to find
        streams other programs created (``0``: AMB's registry only; see :mod:`._discovery`).
    :param block: the longest a stream read blocks before it looks for claims and new streams.
    :param connect_timeout: bound on ``connect()``.
    :param publish_timeout: how long a publish retries through a lost connection.
    :param heartbeat: seconds between PINGs that keep the connection state current (:mod:`._health`).
    :param batch: the most commands sent in one pipeline.
    :param wait_replicas: after each publish (each pipeline of them), ``WAIT`` until this many
        replicas acknowledged the write, so that a failover cannot lose it (``0``: no WAIT; Redis
        replication is asynchronous, see docs/scaling.md).
    :param wait_timeout: the longest a publish waits for ``wait_replicas`` replicas; fewer by then
        fails the publish with ``RedisPublishError`` (the message may still have been stored).
    :param cluster: a Redis Cluster (``redis+cluster://``). Keys then carry a hash tag,
        ``<namespace>:{<topic>}``, so that each topic's stream, its groups and its sharded pub/sub
        channel live on the slot of the topic alone (topics spread over the masters), where a
        single Redis uses ``<namespace>:<topic>``: the two layouts differ, so data written by one
        mode is not read by the other.
    :param pubsub: pub/sub mode on a cluster: ``"sharded"`` (SPUBLISH/SSUBSCRIBE on the topic's
        master; scales with the masters; no wildcards) or ``"classic"`` (PUBLISH, broadcast to every
        node, and (P)SUBSCRIBE on one node; wildcards work; every message crosses every node).
    :param seeds: the cluster's seed nodes ``(host, port)`` (``url`` holds the first of them).
    """

    url: str
    mode: Mode = "streams"
    namespace: str = "amb"
    maxlen: int = 100_000
    discover: float = 0.5
    scan: int = 1000
    block: float = 1.0
    connect_timeout: float = 5.0
    publish_timeout: float = 10.0
    heartbeat: float = 1.0
    batch: int = 500
    wait_replicas: int = 0
    wait_timeout: float = 1.0
    pubsub: Literal["sharded", "classic"] = "sharded"
    cluster: bool = False
    seeds: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, url: str, **overrides: Any) -> RedisConfig:
        """Split ``url`` into AMB's options and redis-py's URL; keyword arguments win.

        :raises ConfigurationError: for another scheme, an unknown mode or a bad number.
        """
        parts = split_url(url, "Redis", _SCHEMES)
        options = parse_options("Redis", SPEC, url, overrides, passthrough=_redis_py_option)
        values = {k: v for k, v in options.items() if k in _OURS}
        theirs = [(k, str(v)) for k, v in options.items() if k not in _OURS]
        namespace = values.get("namespace", "amb")
        if not namespace or ":" in namespace:
            raise ConfigurationError(
                f"Redis namespace must be non-empty without ':': {namespace!r}"
            )
        if parts.scheme.lower() in _CLUSTER_SCHEMES:
            return cls._cluster(parts, theirs, values)
        rest = urlunsplit(parts._replace(query=urlencode(theirs)))
        if "pubsub" in values:
            raise ConfigurationError("the Redis option pubsub= is for a redis+cluster:// URL")
        return cls(url=rest, **values)

    @classmethod
    def _cluster(
        cls, parts: SplitResult, theirs: list[tuple[str, str]], values: dict[str, Any]
    ) -> RedisConfig:
        """A cluster URL: seeds from the network location, redis-py's URL on the first seed."""
        shown = redact_url(urlunsplit(parts))
        if parts.path not in ("", "/", "/0"):
            raise ConfigurationError(
                f"a Redis Cluster has database 0 only; remove {parts.path!r} from {shown!r}"
            )
        userinfo, seeds = split_seeds(parts.netloc, shown)
        host, port = seeds[0]
        scheme = parts.scheme.lower().removesuffix("+cluster")
        netloc = f"{userinfo}{_host(host)}:{port}"
        url = urlunsplit((scheme, netloc, "", urlencode(theirs), ""))
        return cls(url=url, cluster=True, seeds=tuple(seeds), **values)

    @property
    def password(self) -> str | None:
        """The password in the URL, if any (to scrub it from driver messages)."""
        try:
            return urlsplit(self.url).password
        except ValueError:
            return None

    @property
    def description(self) -> str:
        """A human description with the password replaced by ``***``."""
        if not self.cluster:
            return f"redis {self.mode} {redact_url(self.url)} namespace={self.namespace}"
        first = redact_url(self.url)
        shown = ",".join(f"{_host(h)}:{p}" for h, p in self.seeds)
        head, _, tail = first.partition("://")
        userinfo = tail.split("@", 1)[0] + "@" if "@" in tail.split("/", 1)[0] else ""
        query = urlsplit(first).query
        where = f"{head}+cluster://{userinfo}{shown}" + (f"?{query}" if query else "")
        return f"redis-cluster {self.mode} {where} namespace={self.namespace}"

    @property
    def sharded(self) -> bool:
        """Pub/sub messages go by SPUBLISH/SSUBSCRIBE (a cluster with ``pubsub=sharded``)."""
        return self.cluster and self.pubsub == "sharded"

    def node_url(self, host: str, port: int) -> str:
        """redis-py's URL for one node of the cluster (same credentials and options): the
        sharded pub/sub connections are made per master."""
        parts = urlsplit(self.url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}{_host(host)}:{port}"))

    def __repr__(self) -> str:
        return f"RedisConfig({self.description})"

    # -- naming -----------------------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        """What comes before the topic in a key: ``<namespace>:``, or ``<namespace>:{`` in a
        cluster."""
        return f"{self.namespace}:{{" if self.cluster else f"{self.namespace}:"

    def key(self, topic: str) -> str:
        """The stream key, or pub/sub channel, of ``topic``: ``<namespace>:<topic>``, or
        ``<namespace>:{<topic>}`` in a cluster (the hash tag: the topic alone picks the slot)."""
        return f"{self.prefix}{topic}}}" if self.cluster else f"{self.namespace}:{topic}"

    def topic_of(self, key: bytes) -> bytes:
        """The topic part of a key or channel this configuration named (the inverse of ``key``)."""
        end = len(key) - 1 if self.cluster and key.endswith(b"}") else len(key)
        return key[len(self.prefix) : end]

    def glob(self, pattern: str) -> str:
        """The Redis glob of the keys, or channels, of ``pattern``'s topics: each ``*`` or ``>``
        token becomes ``*``, glob specials are escaped. Broader than AMB's grammar (Redis's ``*``
        crosses dots), so whatever it matches is re-checked with AMB's matcher."""
        tokens = [
            "*" if t in ("*", ">") else t.translate(_GLOB_SPECIAL) for t in pattern.split(".")
        ]
        joined = ".".join(tokens)
        namespace = self.namespace.translate(_GLOB_SPECIAL)
        return f"{namespace}:{{{joined}}}" if self.cluster else f"{namespace}:{joined}"

    @property
    def registry(self) -> str:
        """The set of topics that have a stream (``<namespace>::topics``; no topic starts with ':')."""
        return f"{self.namespace}::topics"


def _redis_py_option(name: str) -> bool:
    """True for an option redis-py reads from a URL (``db``, ``socket_timeout``, ``ssl_*``...):
    AMB hands those on; anything else is unknown to both and refused before it reaches the driver."""
    from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS

    return name in URL_QUERY_ARGUMENT_PARSERS or name in _DRIVER_KWARGS


def _host(host: str) -> str:
    """``host`` as written in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host
