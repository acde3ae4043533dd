"""SQS through the bus beside a hand-written raw aiobotocore loop with the same guarantees and the
same batching, in one run.

Both cases go the same way: publish to one SNS topic in ``PublishBatch`` calls of 10 (up to 4 in
flight), SNS delivers raw into an SQS queue through a filter policy on ``amb-topic``, two long-poll
loops receive 10 at a time, each message is decoded and handled once, then deleted in
``DeleteMessageBatch`` calls. The endpoint is ``AMB_SQS_URL`` when set, otherwise a throwaway moto
server (moto, a Python server, is the bottleneck: compare the ratio, not the absolute figures).
``python -m bench sqs``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request
import uuid
from typing import Any
from urllib.parse import urlencode

from amb_core import Message, MessageBus
from amb_core.testing.servers import ServerProcess, find_binary

from ._report import measure, percentile, print_table

N = int(os.environ.get("AMB_BENCH_SQS_N", "1000"))
PUBLISHERS = 40  # concurrent publishing tasks: the bus batches what they publish together
PAYLOAD = {"agent": "planner", "task": "analyze", "data": "x" * 60}  # ~100 bytes as JSON


def _ready(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2) as response:
        return bool(response.status == 200)


def endpoint() -> tuple[str, ServerProcess | None]:
    """The base ``sqs://`` URL (``wait=1``) and the moto server started for it, if any."""
    url = os.environ.get("AMB_SQS_URL")
    if url:
        return url, None
    for key, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(key, value)
    binary = find_binary("moto_server")
    argv = [binary] if binary else [sys.executable, "-m", "moto.server"]
    server = ServerProcess([*argv, "-H", "127.0.0.1", "-p", "{port}"], _ready, name="moto").start()
    query = {"region": "us-east-1", "endpoint": f"http://127.0.0.1:{server.port}", "wait": "1"}
    return "sqs://?" + urlencode(query), server


def namespaced(base: str) -> str:
    return base + ("&" if "?" in base else "?") + f"namespace=b{uuid.uuid4().hex[:10]}"


# -- raw aiobotocore ------------------------------------------------------------------------------


async def raw_loop(sns: Any, sqs: Any, topic_arn: str, queue_url: str) -> None:
    received = 0
    done = asyncio.Event()
    handled: list[Any] = []

    async def poll() -> None:
        nonlocal received
        while not done.is_set():
            response = await sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            records = response.get("Messages") or []
            for record in records:
                handled.append(json.loads(record["Body"]))  # the "handler"
            if records:
                await sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": r["ReceiptHandle"]}
                        for i, r in enumerate(records)
                    ],
                )
                received += len(records)
                if received >= N:
                    done.set()

    body = json.dumps(PAYLOAD, separators=(",", ":"))
    flights = asyncio.Semaphore(4)

    async def publish_batch(start: int) -> None:
        async with flights:
            await sns.publish_batch(
                TopicArn=topic_arn,
                PublishBatchRequestEntries=[
                    {
                        "Id": str(i),
                        "Message": body,
                        "MessageAttributes": {
                            "amb-topic": {"DataType": "String", "StringValue": "bench.raw"},
                            "amb-id": {"DataType": "String", "StringValue": uuid.uuid4().hex},
                        },
                    }
                    for i in range(min(10, N - start))
                ],
            )

    pollers = [asyncio.ensure_future(poll()) for _ in range(2)]
    await asyncio.gather(*(publish_batch(start) for start in range(0, N, 10)))
    await done.wait()
    await asyncio.gather(*pollers)


async def raw_case(base: str) -> Any:
    from aiobotocore.session import get_session

    from amb_sqs import parse_url

    config = parse_url(namespaced(base))
    session = get_session()
    kwargs = {"region_name": config.region, "endpoint_url": config.endpoint}
    async with (
        session.create_client("sns", **kwargs) as sns,
        session.create_client("sqs", **kwargs) as sqs,
    ):
        topic_arn = (await sns.create_topic(Name=config.namespace))["TopicArn"]
        queue_url = (await sqs.create_queue(QueueName=f"{config.namespace}-raw"))["QueueUrl"]
        queue_arn = (
            await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        )["Attributes"]["QueueArn"]
        await sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={
                "RawMessageDelivery": "true",
                "FilterPolicy": json.dumps({"amb-topic": ["bench.raw"]}),
            },
        )
        figure = await measure(
            "raw aiobotocore: SNS batch -> SQS -> delete batch",
            N,
            lambda: raw_loop(sns, sqs, topic_arn, queue_url),
        )
        await sqs.delete_queue(QueueUrl=queue_url)
        await sns.delete_topic(TopicArn=topic_arn)
        return figure


# -- the bus --------------------------------------------------------------------------------------


async def bus_loop(bus: MessageBus) -> None:
    count = 0
    done = asyncio.Event()

    async def handler(message: Message) -> None:
        nonlocal count
        count += 1
        if count == N:
            done.set()

    subscriber = await bus.subscribe("bench.bus", handler)

    async def publisher(share: int) -> None:
        for _ in range(share):
            await bus.publish("bench.bus", PAYLOAD)

    await asyncio.gather(*(publisher(N // PUBLISHERS) for _ in range(PUBLISHERS)))
    await done.wait()
    await subscriber.cancel()


async def request_latency(bus: MessageBus) -> str:
    await bus.subscribe("bench.echo", lambda message: message.payload)
    await bus.request("bench.echo", PAYLOAD, timeout=30)  # warm the inbox
    latencies = []
    for _ in range(30):
        started = time.perf_counter()
        await bus.request("bench.echo", PAYLOAD, timeout=30)
        latencies.append((time.perf_counter() - started) * 1e3)
    return f"p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms"


async def amain() -> None:
    base, server = endpoint()
    try:
        raw = await raw_case(base)
        async with MessageBus.from_url(namespaced(base)) as bus:
            through_bus = await measure(
                f"bus: {PUBLISHERS} publishers, 1 fan-out subscriber", N, lambda: bus_loop(bus)
            )
            latency = await request_latency(bus)
        print_table(f"SQS/SNS end to end, {N} messages (median of 3)", [raw, through_bus], raw)
        print(f"\nbus / raw: {through_bus.rate / raw.rate:.2f}x (target >= 0.8x)")
        print(f"request/reply one at a time through the bus: {latency}")
    finally:
        if server is not None:
            server.close()


def main() -> None:
    asyncio.run(amain())


if __name__ == "__main__":
    main()
