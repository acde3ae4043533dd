"""A namespace on SNS and SQS: its topic and queues, declared, subscribed, swept and deleted.

One SNS topic per namespace carries every message (the AMB topic rides in the ``amb-topic``
attribute). Every subscription is an SQS queue subscribed to that topic with raw delivery and a
filter policy on ``amb-topic`` (see :mod:`amb_sqs.naming`): a consumer group shares one durable
queue, a fan-out subscriber gets a queue of its own. Every queue has a redrive policy to the
namespace's DLQ queue after ``max_attempts + redrive_margin`` receives, and the dead-letter archive
queue collects every ``dlq.*`` message. The transport owns the two clients this object uses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any

from amb_core.deadletter import DLQ_PREFIX
from amb_core.errors import ConfigurationError
from amb_core.message import Message
from amb_core.transport import SubscriptionSpec

from ._subscription import BATCH
from .codec import from_sqs
from .config import SQSConfig
from .errors import NOT_FOUND, error_code, translate
from .naming import (
    archive_queue_name,
    dlq_queue_name,
    fanout_queue_name,
    filter_policy,
    group_queue_name,
    topic_name,
)

__all__ = ["Namespace"]

log = logging.getLogger("amb.sqs")


class Namespace:
    """The SNS topic and SQS queues of one namespace.

    ``sqs`` and ``sns`` are the transport's aiobotocore clients (``None`` while not connected);
    :meth:`declare` sets ``topic_arn``, ``dlq_url``, ``dlq_arn`` and ``archive_url``.
    """

    def __init__(self, config: SQSConfig) -> None:
        self.config = config
        self.description = config.description
        self.sqs: Any = None
        self.sns: Any = None
        self.topic_arn = ""
        self.dlq_url = ""
        self.dlq_arn = ""
        self.archive_url = ""
        self._group_lock = asyncio.Lock()

    async def declare(self) -> None:
        """Create (idempotently) the namespace's SNS topic and its native DLQ queue."""
        config = self.config
        attributes = {"FifoTopic": "true"} if config.fifo else {}
        created = await self.sns.create_topic(
            Name=topic_name(config.namespace, config.fifo), Attributes=attributes
        )
        self.topic_arn = created["TopicArn"]
        dlq_attributes = {"MessageRetentionPeriod": "1209600"}
        if config.fifo:
            dlq_attributes["FifoQueue"] = "true"
        self.dlq_url, self.dlq_arn = await self.ensure_queue(
            dlq_queue_name(config.namespace, config.fifo), dlq_attributes
        )
        if config.dlq_archive:
            # Every dead letter published on dlq.* also lands here, kept 14 days, so that
            # ``bus.dead_letters`` / ``amb dlq`` can list and replay what was published before.
            self.archive_url, arn = await self.ensure_queue(
                archive_queue_name(config.namespace, config.fifo), dlq_attributes
            )
            if await self.find_subscription(arn) is None:
                await self.subscribe_queue(arn, DLQ_PREFIX + ">", self.archive_url)

    async def probe(self) -> None:
        """One cheap request, to learn whether the endpoint answers (see :mod:`._liveness`)."""
        await self.sqs.list_queues(QueueNamePrefix=self.config.namespace, MaxResults=1)

    async def open_queue(self, spec: SubscriptionSpec) -> tuple[str, str, bool]:
        """The queue a subscription reads, created and subscribed to the topic where needed:
        its URL, its SNS subscription's ARN, and whether it is the subscriber's own (fan-out).

        :raises SQSError: typed; caused by the driver's error when the topic is gone
            (``NotFound``), so that the caller can declare the namespace again.
        """
        config = self.config
        max_receive = (spec.max_attempts or 5) + config.redrive_margin
        attributes = {
            "VisibilityTimeout": str(max(1, math.ceil(spec.ack_wait))),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": self.dlq_arn, "maxReceiveCount": str(max_receive)}
            ),
        }
        if config.fifo:
            attributes["FifoQueue"] = "true"
        try:
            if spec.group is None:
                name = fanout_queue_name(config.namespace, config.fifo)
                attributes["MessageRetentionPeriod"] = str(config.fanout_retention)
                url, arn = await self.ensure_queue(name, attributes, create_only=True)
                try:
                    sub_arn: str = await self.subscribe_queue(arn, spec.pattern, url)
                except BaseException:
                    await self.drop_queue(url, None)
                    raise
                return url, sub_arn, True
            name = group_queue_name(config.namespace, spec.group, spec.pattern, config.fifo)
            async with self._group_lock:
                url, arn = await self.ensure_queue(name, attributes)
                found = await self.find_subscription(arn)
                if found is None:
                    found = await self.subscribe_queue(arn, spec.pattern, url)
            return url, found, False
        except ConfigurationError:
            raise
        except Exception as exc:
            error = translate(exc, f"subscribe to {spec.pattern!r}", self.description)
            raise error from exc if error_code(exc) == "NotFound" else None

    async def ensure_queue(
        self, name: str, attributes: dict[str, str], *, create_only: bool = False
    ) -> tuple[str, str]:
        """The URL and ARN of queue ``name``, created when missing (an existing queue keeps its
        attributes, so that members with other settings do not fight over them)."""
        url = None
        if not create_only:
            try:
                url = (await self.sqs.get_queue_url(QueueName=name))["QueueUrl"]
            except Exception as exc:
                if error_code(exc) not in NOT_FOUND:
                    raise
        if url is None:
            url = (await self.sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
        got = await self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return url, got["Attributes"]["QueueArn"]

    async def subscribe_queue(self, queue_arn: str, pattern: str, queue_url: str) -> str:
        """Let the SNS topic deliver into the queue (queue policy), then subscribe it raw and
        filtered."""
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": self.topic_arn}},
                }
            ],
        }
        await self.sqs.set_queue_attributes(
            QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)}
        )
        response = await self.sns.subscribe(
            TopicArn=self.topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true", "FilterPolicy": filter_policy(pattern)},
            ReturnSubscriptionArn=True,
        )
        return str(response["SubscriptionArn"])

    async def find_subscription(self, queue_arn: str) -> str | None:
        kwargs: dict[str, Any] = {"TopicArn": self.topic_arn}
        while True:
            page = await self.sns.list_subscriptions_by_topic(**kwargs)
            for sub in page.get("Subscriptions", []):
                if sub.get("Endpoint") == queue_arn:
                    return str(sub["SubscriptionArn"])
            token = page.get("NextToken")
            if not token:
                return None
            kwargs["NextToken"] = token

    async def drop_queue(self, queue_url: str, subscription_arn: str | None) -> None:
        """Unsubscribe and delete a queue; never raises (a dead endpoint must not break close)."""
        if self.sqs is None:
            return
        if subscription_arn:
            try:
                await self.sns.unsubscribe(SubscriptionArn=subscription_arn)
            except Exception as exc:
                log.warning("unsubscribing %s failed: %s", queue_url, exc)
        await self._delete_queue(queue_url)

    async def _delete_queue(self, queue_url: str) -> None:
        """Delete a queue; a failure is logged, not raised, and a queue already gone (deleted by
        its own subscription, or lost by an emulator's restart) is what was wanted."""
        try:
            await self.sqs.delete_queue(QueueUrl=queue_url)
        except Exception as exc:
            gone = error_code(exc) in NOT_FOUND
            (log.debug if gone else log.warning)("deleting queue %s failed: %r", queue_url, exc)

    async def delete_group(self, pattern: str, group: str) -> None:
        """Remove a consumer group's queue and its SNS subscription, with its messages."""
        name = group_queue_name(self.config.namespace, group, pattern, self.config.fifo)
        try:
            url = (await self.sqs.get_queue_url(QueueName=name))["QueueUrl"]
        except Exception as exc:
            if error_code(exc) in NOT_FOUND:
                return
            raise translate(exc, "delete group", self.description) from None
        got = await self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        await self.drop_queue(url, await self.find_subscription(got["Attributes"]["QueueArn"]))

    async def own_queues(self) -> list[str]:
        """The URLs of the namespace's group, fan-out, DLQ and archive queues."""
        config = self.config
        ns, suffix = config.namespace, ".fifo" if config.fifo else ""
        exact = {dlq_queue_name(ns, config.fifo), archive_queue_name(ns, config.fifo)}
        urls: list[str] = []
        kwargs: dict[str, Any] = {"QueueNamePrefix": f"{ns}-", "MaxResults": 1000}
        while True:
            page = await self.sqs.list_queues(**kwargs)
            for url in page.get("QueueUrls", []):
                name = url.rsplit("/", 1)[-1]
                mine = name.startswith((f"{ns}-g-", f"{ns}-f-")) and name.endswith(suffix)
                if mine or name in exact:
                    urls.append(url)
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        return urls

    async def delete(self, urls: list[str]) -> None:
        """Unsubscribe everything from the topic, delete the queues ``urls`` and the topic."""
        listing: dict[str, Any] = {"TopicArn": self.topic_arn}
        while True:
            page = await self.sns.list_subscriptions_by_topic(**listing)
            for sub_info in page.get("Subscriptions", []):
                try:
                    await self.sns.unsubscribe(SubscriptionArn=sub_info["SubscriptionArn"])
                except Exception as exc:  # go on deleting the rest; the topic's deletion follows
                    log.warning("unsubscribing %s failed: %r", sub_info["SubscriptionArn"], exc)
            if not page.get("NextToken"):
                break
            listing["NextToken"] = page["NextToken"]
        for url in urls:
            await self._delete_queue(url)
        await self.sns.delete_topic(TopicArn=self.topic_arn)

    async def sweep(self, idle: float) -> list[Message]:
        """Take every message out of the native DLQ queue; stop after ``idle`` seconds without
        a new one."""
        found: list[Message] = []
        deadline = time.monotonic() + idle
        while time.monotonic() < deadline:
            response = await self.sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=BATCH,
                WaitTimeSeconds=min(self.config.wait, max(0, math.ceil(idle))),
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            records = response.get("Messages") or []
            if not records:
                continue
            deadline = time.monotonic() + idle
            for record in records:
                count = int(record.get("Attributes", {}).get("ApproximateReceiveCount", 1))
                message, _ = from_sqs(record, "redriven.foreign", count)
                found.append(message)
            await self.sqs.delete_message_batch(
                QueueUrl=self.dlq_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r["ReceiptHandle"]}
                    for i, r in enumerate(records)
                ],
            )
        return found
