"""Key-change notifications (Tyk's ``oauth_on_keychange_url``), sent off the request path.

After each successful token request the server queues a JSON notice; one background task per
process POSTs it with ``X-Tyk-Shared-Secret``. Each attempt has a timeout, a failed one is retried
a bounded number of times with a growing pause, and the queue is bounded: when the endpoint is
dead and the queue is full, new notices are dropped (and counted in the log) rather than held, so
a dead endpoint never slows a token request nor grows memory.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

__all__ = ["Notifier"]

log = logging.getLogger("fastgate.oauth")

QUEUE_LIMIT: Final = 1000
ATTEMPTS: Final = 3
TIMEOUT: Final = 5.0  # seconds per attempt: connect, send and read the status line
BACKOFF: Final = 0.5  # seconds before the 2nd attempt, doubled for each later one
MAX_RESPONSE_HEAD: Final = 16 * 1024


class Notifier:
    """A bounded queue of notices and the task that delivers them."""

    def __init__(self, *, timeout: float = TIMEOUT, attempts: int = ATTEMPTS, backoff: float = BACKOFF) -> None:
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.queue: asyncio.Queue[tuple[str, str, bytes]] | None = None
        self.task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.delivered = 0

    def send(self, url: str, shared_secret: str, notice: dict[str, Any]) -> None:
        """Queue ``notice`` for ``url``; never waits."""
        if self.queue is None:
            self.queue = asyncio.Queue(QUEUE_LIMIT)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())
        try:
            self.queue.put_nowait((url, shared_secret, orjson.dumps(notice)))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped % 100 == 1:
                log.warning("OAuth key-change notifications to %s are not being delivered: %d dropped so far",
                            _where(url), self.dropped)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _run(self) -> None:
        assert self.queue is not None
        while True:
            url, secret, body = await self.queue.get()
            for attempt in range(self.attempts):
                if attempt:
                    await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
                try:
                    status = await asyncio.wait_for(_post(url, secret, body), self.timeout)
                except (OSError, asyncio.TimeoutError, ValueError) as exc:
                    problem = f"{type(exc).__name__}"
                else:
                    if 200 <= status < 300:
                        self.delivered += 1
                        break
                    problem = f"status {status}"
                log.info("OAuth key-change notification to %s failed (%s), attempt %d of %d",
                         _where(url), problem, attempt + 1, self.attempts)


async def _post(url: str, secret: str, body: bytes) -> int:
    """POST ``body`` to ``url``; the response's status code."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    context = ssl.create_default_context() if https else None
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        host_header = host if parts.port is None else f"{host}:{port}"
        head = (f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n").encode("latin-1")
        if secret:
            head += b"X-Tyk-Shared-Secret: " + secret.encode("latin-1", "replace") + b"\r\n"
        writer.write(head + b"\r\n" + body)
        await writer.drain()
        line = await reader.readline()
        if len(line) > MAX_RESPONSE_HEAD:
            raise ValueError("response line too long")
        fields = line.split(b" ", 2)
        if len(fields) < 2 or not fields[1].isdigit():
            raise ValueError("not an HTTP response")
        return int(fields[1])
    finally:
        writer.close()


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}{parts.path}"
