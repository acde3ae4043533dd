"""``python -m soak [redis nats kafka sqs] [options]``: run the fault soak, print each mode's figures,
exit 1 when any mode failed (see :mod:`soak.report` for what fails a mode)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import anyio

from .modes import MODES
from .report import print_result
from .run import Settings, run_mode


def _settings(argv: list[str]) -> tuple[list[str], Settings]:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("modes", nargs="*", help=f"any of {', '.join(MODES)} (default: all)")
    parser.add_argument(
        "--count",
        type=int,
        default=defaults.count,
        help="messages per counted mode (default %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=defaults.seconds,
        help="publishing time of SQS on moto (default %(default)s)",
    )
    parser.add_argument(
        "--minimum",
        type=int,
        default=defaults.minimum,
        help="SQS publishes at least this many (default %(default)s)",
    )
    parser.add_argument(
        "--publishers",
        type=int,
        default=None,
        help="concurrent publisher tasks (default: 200 for kafka, 16 otherwise)",
    )
    parser.add_argument(
        "--outage",
        type=float,
        default=defaults.outage,
        help="seconds each broker restart keeps it down (default %(default)s)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=defaults.settle,
        help="after the last publish, give up once nothing new was handled "
        "for this long (default %(default)s)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=defaults.time_limit,
        help="seconds of publishing before a mode gives up, and again of "
        "draining (default %(default)s)",
    )
    parser.add_argument(
        "--faults",
        default="consumer,broker",
        help="kinds of faults to strike, comma-separated: consumer, broker, "
        "or none (default %(default)s; for diagnosis)",
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=0.0,
        help="a failed mode keeps its brokers up this many seconds, for "
        "inspection (default %(default)s)",
    )
    parser.add_argument(
        "--consumer-options",
        default="",
        help="query options for the consumer's URL only, e.g. debug=cgrp,fetch (librdkafka's "
        "debug log goes to the consumer's log file)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=defaults.concurrency,
        help="the consumer's handlers in flight (default %(default)s)",
    )
    parser.add_argument(
        "--ack-wait",
        type=float,
        default=defaults.ack_wait,
        help="the subscriptions' ack_wait (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if unknown := [name for name in args.modes if name not in MODES]:
        parser.error(f"unknown modes {unknown}: choose among {', '.join(MODES)}")
    settings = Settings(
        count=args.count,
        seconds=args.seconds,
        minimum=args.minimum,
        publishers=args.publishers,
        outage=args.outage,
        settle=args.settle,
        time_limit=args.time_limit,
        hold=args.hold,
        consumer_options=args.consumer_options,
        faults=frozenset(args.faults.split(",")) - {"none", ""},
        concurrency=args.concurrency,
        ack_wait=args.ack_wait,
    )
    return args.modes or list(MODES), settings


async def _run_all(modes: list[str], settings: Settings) -> int:
    failed = []
    for name in modes:
        mode = MODES[name]
        print(f"\n# {name}: {mode.title}", flush=True)
        result = await run_mode(mode, settings)
        print_result(result)
        if result.failures():
            failed.append(name)
    print(f"\n# soak: {'FAILED ' + ', '.join(failed) if failed else 'every mode passed'}")
    return 1 if failed else 0


async def _main(modes: list[str], settings: Settings) -> int:
    """Runs the modes; SIGINT or SIGTERM cancels the run, which still stops its brokers and
    consumer (exit 130)."""
    code = 130
    async with anyio.create_task_group() as tasks:

        async def interrupt() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for received in signals:
                    print(f"\n# soak: interrupted by signal {received}", flush=True)
                    tasks.cancel_scope.cancel()

        tasks.start_soon(interrupt)
        code = await _run_all(modes, settings)
        tasks.cancel_scope.cancel()
    return code


def main(argv: list[str] | None = None) -> int:
    # The buses' warnings (reconnects during the outages) go to each mode's soak.log, not here.
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger().addHandler(logging.NullHandler())
    modes, settings = _settings(sys.argv[1:] if argv is None else argv)
    return anyio.run(_main, modes, settings, backend="asyncio")


if __name__ == "__main__":
    sys.exit(main())
