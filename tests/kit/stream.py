"""Large streamed transfers through the gateway, and a sampler of a process's resident memory.

Shared by ``tests/integration/test_streaming.py`` (256 MiB) and ``bench/streaming.py`` (1 GiB).
Bodies are produced by a generator and hashed on the fly on both ends, so neither the client nor
the test upstream ever holds a whole body; what is measured is the gateway alone.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from typing import Iterator

from tests.kit.upstream import PATTERN

__all__ = ["RssSampler", "blocks", "upload", "download", "rss_kib"]

BLOCK = PATTERN * 16  # 1 MiB


def blocks(size: int) -> Iterator[bytes]:
    """``size`` bytes of the upstream's repeating pattern, 1 MiB at a time."""
    left = size
    while left > 0:
        part = BLOCK if left >= len(BLOCK) else BLOCK[:left]
        left -= len(part)
        yield part


def rss_kib(pid: int) -> int:
    """The resident set size of ``pid`` (VmRSS) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class RssSampler:
    """Samples a process's VmRSS every ``interval`` seconds in a thread, keeping the peak."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.baseline = rss_kib(pid)
        self.peak = self.baseline
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            self.samples += 1
            self._stop.wait(self.interval)

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / 1024


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    return sock


def _read_head(reader) -> tuple[int, dict[str, str]]:
    status_line = reader.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def upload(port: int, path: str, size: int, *, chunked: bool) -> tuple[int, dict, str]:
    """POST ``size`` bytes to ``path``; returns (status, upstream's echo, sha256 we sent)."""
    sent = hashlib.sha256()
    with _connect(port) as sock:
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
        sock.sendall(b"POST %b HTTP/1.1\r\nHost: stream\r\n%b\r\nConnection: close\r\n\r\n" % (path.encode(), framing))
        for part in blocks(size):
            sent.update(part)
            if chunked:
                sock.sendall(b"%x\r\n" % len(part))
                sock.sendall(part)
                sock.sendall(b"\r\n")
            else:
                sock.sendall(part)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        reader = sock.makefile("rb")
        status, headers = _read_head(reader)
        body = reader.read(int(headers["content-length"]))
    return status, json.loads(body), sent.hexdigest()


def download(port: int, path: str) -> tuple[int, dict[str, str], int, str]:
    """GET ``path`` streaming; returns (status, headers, body length, body sha256)."""
    got = hashlib.sha256()
    length = 0
    with _connect(port) as sock:
        sock.sendall(b"GET %b HTTP/1.1\r\nHost: stream\r\nConnection: close\r\n\r\n" % path.encode())
        reader = sock.makefile("rb", buffering=1 << 20)
        status, headers = _read_head(reader)
        if headers.get("transfer-encoding") == "chunked":
            while True:
                size = int(reader.readline().split(b";")[0], 16)
                if size == 0:
                    reader.readline()
                    break
                left = size
                while left:
                    data = reader.read(min(left, 1 << 20))
                    if not data:
                        raise ConnectionError("closed inside a chunk")
                    got.update(data)
                    length += len(data)
                    left -= len(data)
                assert reader.read(2) == b"\r\n"
        else:
            left = int(headers["content-length"])
            while left:
                data = reader.read(min(left, 1 << 20))
                if not data:
                    raise ConnectionError(f"closed with {left} bytes to go")
                got.update(data)
                length += len(data)
                left -= len(data)
    return status, headers, length, got.hexdigest()


def expected_sha(size: int) -> str:
    h = hashlib.sha256()
    for part in blocks(size):
        h.update(part)
    return h.hexdigest()


def timed(fn, *args, **kwargs):
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start
