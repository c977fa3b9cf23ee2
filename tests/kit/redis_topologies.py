"""Real Redis topologies on free local ports: a 3-master Cluster and a Sentinel group.

Each is a set of `redis-server` processes in a temporary directory, started by the constructor
and stopped (and the directory removed) by `stop()`; nothing touches the shared server on 6379.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.kit.procs import free_port, wait_port


class _Servers:
    def __init__(self, prefix: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start_server(self, port: int, *args: str, sentinel: bool = False) -> None:
        """A redis-server (or sentinel) on ``port``, waited for."""
        work = self.dir / str(port)
        work.mkdir(exist_ok=True)
        if sentinel:
            conf = work / "sentinel.conf"  # a sentinel rewrites its config file: it must have one
            conf.write_text("\n".join(args) + "\n")
            argv = ["redis-server", str(conf), "--sentinel", "--port", str(port), "--bind", "127.0.0.1",
                    "--dir", str(work)]
        else:
            argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(work), *args]
        self.procs[port] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, proc=self.procs[port])

    def kill(self, port: int) -> None:
        """SIGKILL one server (no shutdown: what a crash looks like)."""
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterServers(_Servers):
    """Three masters, no replicas, every slot covered; ``url`` names all three."""

    def __init__(self) -> None:
        super().__init__("fastgate-cluster-")
        self.ports = [_cluster_port() for _ in range(3)]
        try:
            for port in self.ports:
                self.start_server(port, "--cluster-enabled", "yes", "--cluster-config-file",
                                  str(self.dir / f"nodes-{port}.conf"), "--cluster-node-timeout", "2000")
            subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                            "--cluster-yes"], check=True, capture_output=True, timeout=30)
            self._wait_ok()
        except BaseException:
            self.stop()
            raise

    def url(self, *ports: int) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports or self.ports)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2)

    def dbsize(self) -> int:
        """Keys stored on all masters together."""
        total = 0
        for port in self.ports:
            with self.client(port) as c:
                total += int(c.dbsize())
        return total

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = []
            for port in self.ports:
                with self.client(port) as c:
                    states.append(c.execute_command("CLUSTER", "INFO").decode())
            if all("cluster_state:ok" in s and "cluster_slots_ok:16384" in s for s in states):
                return
            time.sleep(0.1)
        raise TimeoutError("the Redis cluster did not reach cluster_state:ok")


class RedisSentinelServers(_Servers):
    """A master, one replica and three sentinels monitoring them as ``fg``."""

    SERVICE = "fg"

    def __init__(self) -> None:
        super().__init__("fastgate-sentinel-")
        self.master = free_port()
        self.replica = free_port()
        self.sentinels = [free_port() for _ in range(3)]
        try:
            self.start_server(self.master)
            self.start_server(self.replica, "--replicaof", "127.0.0.1", str(self.master))
            for port in self.sentinels:
                self.start_server(port, f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master} 2",
                                  f"sentinel down-after-milliseconds {self.SERVICE} 1000",
                                  f"sentinel failover-timeout {self.SERVICE} 3000",
                                  f"sentinel parallel-syncs {self.SERVICE} 1", sentinel=True)
            self._wait_replicated()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinels) + f"/{self.SERVICE}/0"

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=5)

    def master_port_by_sentinels(self) -> int | None:
        """The master's port as the first reachable sentinel reports it."""
        for port in self.sentinels:
            try:
                with redis.Redis(port=port, socket_timeout=1) as c:
                    addr = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE)
                    return int(addr[1])
            except redis.RedisError:
                continue
        return None

    def _wait_replicated(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with self.client(self.replica) as c:
                link = c.info("replication").get("master_link_status")
            known = []
            for port in self.sentinels:
                with redis.Redis(port=port, socket_timeout=1) as s:
                    info = s.sentinel_master(self.SERVICE)
                    known.append(int(info.get("num-other-sentinels", 0)) >= 2
                                 and int(info.get("num-slaves", 0)) >= 1)
            if link == "up" and all(known):
                return
            time.sleep(0.1)
        raise TimeoutError("the replica or the sentinels did not come up")


def _cluster_port() -> int:
    """A free port P whose bus port P + 10000 is free too (Redis Cluster's rule), both below the
    kernel's ephemeral range (32768 and up), so no outgoing connection can take one between this
    check and the server's bind."""
    for _ in range(200):
        port = random.randrange(20000, 22700)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")
