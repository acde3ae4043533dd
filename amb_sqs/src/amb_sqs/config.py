"""The ``sqs://`` URL: where the endpoint is and how the bus maps onto SNS and SQS.

::

    sqs://[REGION]?region=us-east-1&endpoint=http://127.0.0.1:5000&namespace=amb&fifo=false
                   &wait=5&pollers=2&redrive_margin=3&fanout_retention=3600&profile=NAME
                   &dlq_archive=true&heartbeat=true

Credentials are never read from the URL: they come from the standard AWS chain (environment,
shared config/credentials files and ``profile``, container or instance roles). A URL carrying
``user:password@``, ``aws_access_key_id`` or ``aws_secret_access_key`` is refused, and every
description of the configuration is redacted.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import attrs

from amb_core.errors import ConfigurationError
from amb_core.options import Option, parse_options
from amb_core.urls import query_options, redact_url, split_url

__all__ = ["SPEC", "SQSConfig", "parse_url"]

_NAMESPACE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_CREDENTIAL_KEYS = frozenset(
    {"aws_access_key_id", "aws_secret_access_key", "aws_session_token", "access_key", "secret_key"}
)
#: The options an ``sqs://`` URL or keyword argument may give (the fields of :class:`SQSConfig`).
SPEC = (
    Option("region", str),
    Option("endpoint", str),
    Option("endpoint_url", str),
    Option("namespace", str),
    Option("fifo", bool),
    Option("wait", int, low=0, high=20),
    Option("pollers", int, low=1, high=32),
    Option("redrive_margin", int, low=1, high=100),
    Option("fanout_retention", int, low=60, high=1_209_600),
    Option("profile", str),
    Option("connect_timeout", float, low=0.1, high=300),
    Option("pool", int, low=1, high=1000),
    Option("dlq_archive", bool),
    Option("heartbeat", bool),
)


@attrs.frozen(slots=True)
class SQSConfig:
    """Everything the transport needs, validated.

    :param region: AWS region (default: the AWS chain's, e.g. ``AWS_DEFAULT_REGION``).
    :param endpoint: an endpoint override for both SQS and SNS (moto, LocalStack, a VPC endpoint).
    :param namespace: names the SNS topic and prefixes every queue; buses on one namespace talk.
    :param fifo: FIFO topic and queues: ordered per key, exactly-once publish within 5 minutes.
    :param wait: long-poll seconds per receive (0-20); also bounds how long closing a group waits.
    :param pollers: concurrent receive calls per subscription (each takes up to 10 messages).
    :param redrive_margin: SQS moves a message to the DLQ queue after the bus's ``max_attempts``
        plus this many receives (deliveries whose consumer died count too).
    :param fanout_retention: seconds a fan-out queue keeps messages (a crashed subscriber's queue
        stops growing past this).
    :param profile: a named profile of the shared AWS config files.
    :param connect_timeout: seconds to reach the endpoint before a typed ``ConnectError``.
    :param pool: the HTTP connection pool size of each client.
    :param dlq_archive: keep every dead letter (``dlq.*``) in ``<namespace>-dlq-archive`` for 14
        days, so that dead letters can be listed and replayed.
    :param heartbeat: keep held messages invisible (extended when less than half of ``ack_wait``
        is left) until deleted or handed back, so that slow handlers cause no duplicates.
    """

    region: str | None = None
    endpoint: str | None = None
    namespace: str = "amb"
    fifo: bool = False
    wait: int = 5
    pollers: int = 2
    redrive_margin: int = 3
    fanout_retention: int = 3600
    profile: str | None = None
    connect_timeout: float = 5.0
    pool: int = 50
    dlq_archive: bool = True
    heartbeat: bool = True

    @property
    def description(self) -> str:
        endpoint = redact_url(self.endpoint) if self.endpoint else "aws"
        mode = " fifo" if self.fifo else ""
        return f"SQSTransport {endpoint} region={self.region or 'default'} namespace={self.namespace}{mode}"

    @classmethod
    def create(cls, **options: Any) -> SQSConfig:
        """Validate keyword options (as from a URL query or from code).

        :raises ConfigurationError: for unknown or malformed options, or credentials.
        """
        leaked = _CREDENTIAL_KEYS & {k.lower() for k in options}
        if leaked:
            raise ConfigurationError(
                "SQS credentials are not taken from the URL or code; use the standard AWS chain "
                f"(environment, shared files, profile=, roles); got {sorted(leaked)}"
            )
        values = parse_options("SQS", SPEC, None, options)
        if "endpoint_url" in values:
            values["endpoint"] = values.pop("endpoint_url")
        for name in ("region", "endpoint", "profile"):
            if name in values:
                values[name] = values[name] or None
        namespace = values.get("namespace", "amb")
        if not _NAMESPACE.match(namespace):
            raise ConfigurationError(
                f"namespace {namespace!r} must be 1-40 letters, digits, '-' or '_' "
                "(it names the SNS topic and prefixes queue names)"
            )
        endpoint = values.get("endpoint")
        if endpoint and not urlsplit(endpoint).scheme.startswith("http"):
            raise ConfigurationError(f"endpoint must be an http(s) URL: {redact_url(endpoint)}")
        return cls(**values)


def parse_url(url: str, **overrides: Any) -> SQSConfig:
    """The configuration of an ``sqs://`` URL; keyword ``overrides`` win over the query.

    :raises ConfigurationError: for another scheme, credentials in the URL, or bad options.
    """
    safe = redact_url(url)
    parts = split_url(url, "SQS", ("sqs",))
    if "@" in parts.netloc:
        raise ConfigurationError(
            f"SQS URLs carry no credentials ({safe}); they come from the standard AWS chain"
        )
    options: dict[str, Any] = dict(query_options(url))
    if parts.hostname and "region" not in options:
        options["region"] = parts.hostname
    options.update(overrides)
    try:
        return SQSConfig.create(**options)
    except ConfigurationError as exc:
        exc.args = (f"{exc} (URL {safe})",)  # the same type: UnknownOptionError stays one
        raise exc from None
