"""AMB, the Agent Message Bus: agents publish to topics, subscribe to patterns, ask and answer,
and the bus routes by content and parks failed messages in dead letters, over in-memory, Redis,
NATS, Kafka and SQS transports.

    from amb_core import MessageBus

    async with MessageBus.from_url("memory://") as bus:
        @bus.subscribe("agent.tasks.*", group="workers")
        async def work(message):
            return {"done": message.payload["task"]}

        reply = await bus.request("agent.tasks.analyze", {"task": "q4"}, timeout=5)
"""

from .bus import MessageBus
from .deadletter import DeadLetter, DeadLetters, RetryPolicy
from .errors import (
    AMBError,
    AuthenticationError,
    BrokerUnavailableError,
    ConfigurationError,
    ConnectError,
    DecodeError,
    InvalidOptionError,
    InvalidTopicError,
    MessageTooLargeError,
    NoRespondersError,
    NotConnectedError,
    PayloadValidationError,
    PluginError,
    PublishError,
    RejectMessage,
    RemoteHandlerError,
    ReplyError,
    RequestError,
    RequestTimeoutError,
    StreamGapError,
    StreamIdleError,
    TransportError,
    UnknownOptionError,
    UnknownSchemeError,
    UnsupportedError,
    UnsupportedEventLoopError,
)
from .gather import Gather
from .memory import InMemoryBroker, MemoryHub, MemoryTransport
from .message import Message
from .middleware import Middleware
from .plugins import hookimpl
from .routing import Router, Rule
from .streaming import ReplyStream
from .subscriber import Subscriber
from .transport import (
    Capabilities,
    ConnectionState,
    Delivery,
    Subscription,
    SubscriptionSpec,
    Transport,
)

__version__ = "0.1.0"

__all__ = [
    "AMBError",
    "AuthenticationError",
    "BrokerUnavailableError",
    "Capabilities",
    "ConfigurationError",
    "ConnectError",
    "ConnectionState",
    "DeadLetter",
    "DeadLetters",
    "DecodeError",
    "Delivery",
    "Gather",
    "InMemoryBroker",
    "InvalidOptionError",
    "InvalidTopicError",
    "MemoryHub",
    "MemoryTransport",
    "Message",
    "MessageBus",
    "MessageTooLargeError",
    "Middleware",
    "NoRespondersError",
    "NotConnectedError",
    "PayloadValidationError",
    "PluginError",
    "PublishError",
    "RejectMessage",
    "RemoteHandlerError",
    "ReplyError",
    "ReplyStream",
    "RequestError",
    "RequestTimeoutError",
    "RetryPolicy",
    "Router",
    "Rule",
    "StreamGapError",
    "StreamIdleError",
    "Subscriber",
    "Subscription",
    "SubscriptionSpec",
    "Transport",
    "TransportError",
    "UnknownOptionError",
    "UnknownSchemeError",
    "UnsupportedError",
    "UnsupportedEventLoopError",
    "hookimpl",
]
