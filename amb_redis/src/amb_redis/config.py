"""Reading a Redis URL: AMB's own options out of the query string, the rest for redis-py.

``redis://[user:password@]host[:port][/db]?mode=streams&namespace=amb&maxlen=100000``; ``rediss://``
(TLS) and ``unix://`` work as in redis-py. AMB's options (also accepted as keyword arguments, which
win over the URL) are removed before the URL reaches redis-py, and the password is kept out of every
description, repr, log line and error (:attr:`RedisConfig.description`).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import attrs

from amb_core.errors import ConfigurationError
from amb_core.options import Option, parse_options
from amb_core.urls import redact_url, split_url

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
)
_OURS = frozenset(o.name for o in SPEC)
_DRIVER_KWARGS = frozenset({"client_name", "username", "password", "ssl_cert_reqs", "ssl_ca_certs"})
_SCHEMES = ("redis", "rediss", "unix")
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
        rest = urlunsplit(parts._replace(query=urlencode(theirs)))
        return cls(url=rest, **values)

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
        return f"redis {self.mode} {redact_url(self.url)} namespace={self.namespace}"

    def __repr__(self) -> str:
        return f"RedisConfig({self.description})"

    # -- naming -----------------------------------------------------------------------------------

    def key(self, topic: str) -> str:
        """The stream key, or pub/sub channel, of ``topic``: ``<namespace>:<topic>``."""
        return f"{self.namespace}:{topic}"

    def glob(self, pattern: str) -> str:
        """The Redis glob of the keys, or channels, of ``pattern``'s topics: each ``*`` or ``>``
        token becomes ``*``, glob specials are escaped. Broader than AMB's grammar (Redis's ``*``
        crosses dots), so whatever it matches is re-checked with AMB's matcher."""
        tokens = [
            "*" if t in ("*", ">") else t.translate(_GLOB_SPECIAL) for t in pattern.split(".")
        ]
        return f"{self.namespace.translate(_GLOB_SPECIAL)}:{'.'.join(tokens)}"

    @property
    def registry(self) -> str:
        """The set of topics that have a stream (``<namespace>::topics``; no topic starts with ':')."""
        return f"{self.namespace}::topics"


def _redis_py_option(name: str) -> bool:
    """True for an option redis-py reads from a URL (``db``, ``socket_timeout``, ``ssl_*``...):
    AMB hands those on; anything else is unknown to both and refused before it reaches the driver."""
    from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS

    return name in URL_QUERY_ARGUMENT_PARSERS or name in _DRIVER_KWARGS
