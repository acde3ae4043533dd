"""AMB's Kafka backend on confluent-kafka: ``kafka://host:9092``.

``from amb_kafka import KafkaBroker`` (the seed's name) or ``MessageBus.from_url("kafka://...")``.
"""

from .config import KafkaConfig
from .errors import (
    KafkaAuthenticationError,
    KafkaConnectError,
    KafkaError,
    KafkaPublishError,
    KafkaTransportError,
    KafkaUnavailableError,
)
from .subscription import KafkaSubscription
from .transport import KafkaBroker, KafkaTransport

__all__ = [
    "KafkaAuthenticationError",
    "KafkaBroker",
    "KafkaConfig",
    "KafkaConnectError",
    "KafkaError",
    "KafkaPublishError",
    "KafkaSubscription",
    "KafkaTransport",
    "KafkaTransportError",
    "KafkaUnavailableError",
]
