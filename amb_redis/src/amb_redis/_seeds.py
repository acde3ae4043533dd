"""Reading the seed nodes of a ``redis+cluster://`` URL: ``[user:password@]host:port,host2:port2``.

A cluster URL lists several nodes so that a client can start while any one of them is down;
``urllib`` cannot parse such a network location (``.port`` fails on the comma), so it is split here:
the first seed becomes the URL redis-py is given, the others its extra ``startup_nodes``. IPv6
addresses are written in brackets (``[::1]:7000``). The password stays in the URL only, never in a
seed, so that nothing printed from the seeds can carry it.
"""

from __future__ import annotations

from amb_core.errors import ConfigurationError

__all__ = ["Seed", "split_seeds"]

Seed = tuple[str, int]
_DEFAULT_PORT = 6379


def split_seeds(netloc: str, shown: str) -> tuple[str, list[Seed]]:
    """``(userinfo, seeds)`` of a cluster URL's network location (``userinfo`` is ``""`` or ends
    with ``@``).

    :param shown: the URL redacted, for error messages.
    :raises ConfigurationError: for an empty host list, a bad port or an empty seed.
    """
    userinfo, at, hosts = netloc.rpartition("@")
    seeds = [_seed(part.strip(), shown) for part in hosts.split(",")]
    return (userinfo + at), seeds


def _seed(text: str, shown: str) -> Seed:
    if not text:
        raise ConfigurationError(f"Redis Cluster URL {shown!r} has an empty seed node")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ConfigurationError(f"bad seed node {text!r} in Redis Cluster URL {shown!r}")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ConfigurationError(f"seed node {text!r} in Redis Cluster URL {shown!r} has no host")
    if not port_text:
        return host, _DEFAULT_PORT
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ConfigurationError(f"bad port in seed node {text!r} of Redis Cluster URL {shown!r}")
    return host, port
