"""URL parsing for the NATS backend: what ``nats://`` and ``tls://`` URLs may say.

::

    nats://[user:password@|token@]host[:port][,host2[:port]...][?option=value&...]
    tls://...            the same over TLS (the system's CA store)

Options (query string or keyword arguments): ``mode`` (``core``, the default, or ``jetstream``),
``name`` (client name shown by the server), ``connect_timeout`` (seconds, default 5: the bound on
``connect()``), ``publish_timeout`` (seconds, default 5: how long a publish or request made while
the connection is down waits for it to come back before ``BrokerUnavailableError``; 0 raises at
once), ``stream_prefix`` (JetStream stream names, default ``AMB``), ``max_age`` (seconds a
JetStream stream keeps messages, default 86400), ``max_bytes`` (per stream, default unlimited),
``storage`` (``file`` or ``memory``), ``replicas`` (default 1), ``token``, ``user``, ``password``,
``tls_ca`` (a CA bundle to trust instead of the system's), ``tls_cert`` and ``tls_key`` (a client
certificate). Any ``tls_*`` option turns TLS on for a ``nats://`` URL too.

Credentials are kept only in :attr:`NATSConfig.servers` (handed to the driver) and never appear in
:attr:`NATSConfig.description`, a repr, an error or a log line.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

import attrs

from amb_core.errors import ConfigurationError
from amb_core.options import Option, parse_options
from amb_core.urls import redact_url, split_url

__all__ = ["SPEC", "NATSConfig", "parse_url"]

Mode = Literal["core", "jetstream"]
_SCHEMES = ("nats", "tls", "nats+tls", "ws", "wss")

#: The options a ``nats://`` URL or keyword argument may give (the fields of :class:`NATSConfig`).
SPEC = (
    Option("mode", str, choices=("core", "jetstream", "js")),
    Option("name", str),
    Option("connect_timeout", float, low=1e-3),
    Option("publish_timeout", float, low=0),
    Option("stream_prefix", str),
    Option("max_age", float, low=0),
    Option("max_bytes", int, low=-1),
    Option("storage", str, choices=("file", "memory")),
    Option("replicas", int, low=1),
    Option("token", str, secret=True),
    Option("user", str),
    Option("password", str, secret=True),
    Option("tls_ca", str),
    Option("tls_cert", str),
    Option("tls_key", str),
)


@attrs.frozen(repr=False)
class NATSConfig:
    """Everything the transport needs to connect, credentials included (never shown)."""

    servers: tuple[str, ...]
    mode: Mode = "core"
    name: str | None = None
    connect_timeout: float = 5.0
    publish_timeout: float = 5.0
    stream_prefix: str = "AMB"
    max_age: float = 86400.0
    max_bytes: int = -1
    storage: Literal["file", "memory"] = "file"
    replicas: int = 1
    token: str | None = None
    user: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def tls(self) -> bool:
        """True when the connection uses TLS (``tls://`` or any ``tls_*`` option)."""
        return bool(self.tls_ca or self.tls_cert) or self.servers[0].startswith("tls://")

    @property
    def description(self) -> str:
        """Servers with credentials replaced by ``***``, and the mode."""
        shown = ",".join(redact_url(s) for s in self.servers)
        return f"NATSTransport {shown} mode={self.mode}"

    def __repr__(self) -> str:
        return f"<NATSConfig {self.description}>"


def _split_servers(url: str) -> tuple[str, ...]:
    """``nats://u:p@a:1,b:2/?x`` -> ``("nats://u:p@a:1", "nats://u:p@b:2")`` without the query."""
    parts = split_url(url, "NATS", _SCHEMES)
    scheme = "tls" if parts.scheme.lower() == "nats+tls" else parts.scheme.lower()
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    prefix = f"{userinfo}@" if at else ""
    servers = tuple(f"{scheme}://{prefix}{host}" for host in (hosts or "127.0.0.1:4222").split(","))
    for server in servers:
        try:
            urlsplit(server).port  # noqa: B018 - validates the port
        except ValueError:
            raise ConfigurationError(f"bad NATS server address {redact_url(server)!r}") from None
    return servers


def parse_url(url: str, **overrides: Any) -> NATSConfig:
    """Read a URL (and keyword overrides, which win) into a :class:`NATSConfig`.

    :raises ConfigurationError: for an unknown scheme, mode or option, or a bad number.
    """
    servers = _split_servers(url)
    options = parse_options("NATS", SPEC, url, overrides)
    if options.get("mode") == "js":
        options["mode"] = "jetstream"
    config = NATSConfig(servers=servers, **options)
    if not config.stream_prefix.replace("_", "").replace("-", "").isalnum():
        raise ConfigurationError("stream_prefix may hold letters, digits, '_' and '-' only")
    return config
