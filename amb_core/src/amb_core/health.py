"""A tiny HTTP endpoint for orchestrators' probes, with no web framework.

``GET /ready`` (or ``/readyz``) answers 200 when the service is ready (connected, every subscription
established; with ``--workers``, every worker) and 503 otherwise; ``GET /live`` (or ``/livez``)
answers 200 while the process serves (503 once it is stopping). Bodies are small JSON objects. A
Kubernetes pod uses them as::

    readinessProbe: {httpGet: {path: /ready, port: 8080}}
    livenessProbe:  {httpGet: {path: /live, port: 8080}}

Each connection gets one answer and is closed (HTTP/1.0 semantics); a request line that does not
arrive within two seconds is dropped, so a stuck client cannot hold the endpoint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import anyio
import anyio.abc

__all__ = ["answer", "serve_health"]

log = logging.getLogger("amb.health")
_PATHS = {"/ready": "ready", "/readyz": "ready", "/live": "live", "/livez": "live"}
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def answer(request_line: str, ready: Callable[[], bool], live: Callable[[], bool]) -> bytes:
    """The whole HTTP response to one request line (``GET /ready HTTP/1.1``)."""
    parts = request_line.split()
    body: dict[str, object]
    if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
        status, body = 405, {"error": "only GET /ready and GET /live"}
    else:
        probe = _PATHS.get(parts[1].split("?", 1)[0])
        if probe is None:
            status, body = 404, {"error": "try /ready or /live"}
        else:
            ok = ready() if probe == "ready" else live()
            status, body = (200 if ok else 503), {probe: ok}
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.0 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + (b"" if parts[:1] == ["HEAD"] else data)


async def serve_health(
    port: int,
    host: str,
    ready: Callable[[], bool],
    live: Callable[[], bool],
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the probes on ``host:port`` until cancelled; ``task_status`` gets the bound port
    (useful with port 0)."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)

    async def one(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            with anyio.move_on_after(2.0):
                while b"\n" not in data and len(data) < 2048:
                    try:
                        data += await stream.receive(1024)
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
            line = data.split(b"\n", 1)[0].decode("latin-1").strip()
            try:
                await stream.send(answer(line, ready, live))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                log.debug("health client went away: %r", exc)

    async with listener:
        bound = listener.extra(anyio.abc.SocketAttribute.local_port)
        log.info("health probes on http://%s:%d/ready and /live", host, bound)
        task_status.started(bound)
        await listener.serve(one)
