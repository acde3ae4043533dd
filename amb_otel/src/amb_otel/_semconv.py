"""Attribute, span and metric names, in one place.

Span attributes follow the OpenTelemetry messaging semantic conventions (``messaging.*``); what
those conventions have no name for is ``amb.*``. Metric attributes are the low-cardinality ones
only: the subscription *pattern* (``messaging.destination.template``), never the concrete topic,
so that a topic per order or per agent cannot explode a metrics backend.
"""

from __future__ import annotations

from typing import Final

SYSTEM: Final = "messaging.system"
DESTINATION: Final = "messaging.destination.name"
TEMPLATE: Final = "messaging.destination.template"
TEMPORARY: Final = "messaging.destination.temporary"
MESSAGE_ID: Final = "messaging.message.id"
CONVERSATION_ID: Final = "messaging.message.conversation_id"
GROUP: Final = "messaging.consumer.group.name"
OPERATION_TYPE: Final = "messaging.operation.type"
OPERATION_NAME: Final = "messaging.operation.name"
ERROR_TYPE: Final = "error.type"

ATTEMPT: Final = "amb.attempt"
STREAM_SEQ: Final = "amb.stream.seq"
KIND: Final = "amb.message.kind"
DEAD_LETTER_REASON: Final = "amb.dead_letter.reason"
DEAD_LETTER_ATTEMPTS: Final = "amb.dead_letter.attempts"
DEAD_LETTER_ERROR: Final = "amb.dead_letter.error"
RETRY_DELAY: Final = "amb.retry.delay"
OUTCOME: Final = "amb.outcome"

EVENT_RETRY: Final = "amb.retry"
EVENT_DEAD_LETTER: Final = "amb.dead_letter"

SYSTEMS: Final = {"sqs": "aws_sqs", "memory": "amb_memory"}
"""A transport's URL scheme to its ``messaging.system`` value where the conventions name it
differently (``aws_sqs``) or do not know it at all (the in-process transport)."""

TEMPORARY_NAME: Final = "(temporary)"
"""Stands for a reply inbox in span names: the conventions keep names low-cardinality."""
