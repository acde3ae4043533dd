"""agent-message-bus-sqs: AMB, the Agent Message Bus, over Amazon SQS with SNS fan-out.

``MessageBus.from_url("sqs://?region=us-east-1")`` or ``MessageBus(SQSBroker("sqs://..."))``; see
``docs/backends/sqs.md``.
"""

from __future__ import annotations

from .config import SQSConfig, parse_url
from .errors import (
    SQSAuthenticationError,
    SQSConnectError,
    SQSError,
    SQSPublishError,
    SQSUnavailableError,
)
from .redrive import sweep_redriven
from .transport import SQSBroker, SQSTransport

__all__ = [
    "SQSAuthenticationError",
    "SQSBroker",
    "SQSConfig",
    "SQSConnectError",
    "SQSError",
    "SQSPublishError",
    "SQSTransport",
    "SQSUnavailableError",
    "parse_url",
    "sweep_redriven",
]
__version__ = "0.1.0"
