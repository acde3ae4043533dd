"""Run every benchmark whose backend is installed: ``python -m bench [name ...]`` (names: memory, redis, nats,
kafka, sqs, conversations; none for all)."""

from __future__ import annotations

import importlib
import sys
import traceback

BENCHES = ["memory", "redis", "nats", "kafka", "sqs", "conversations", "otel"]
OPT_IN = ["scale"]  # run only when named: ``python -m bench scale``


def main(names: list[str]) -> int:
    failed = 0
    for name in names or BENCHES:
        try:
            module = importlib.import_module(f"bench.bench_{name}")
        except ImportError as exc:
            print(f"\n# {name}: skipped ({exc})")
            continue
        print(f"\n# {name}")
        try:
            module.main()
        except Exception:
            failed += 1
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
