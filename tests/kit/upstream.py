"""A real upstream for the tests: its own process, raw asyncio + httptools, recording what it saw.

Run as ``python -m tests.kit.upstream PORT``. Behaviour by path (after any listen path is
stripped by the gateway):

- ``/echo...``     200 JSON: method, path, query, headers (as a list), body length and sha256
- ``/bytes/N``     N bytes of a repeating pattern; ``?chunked=1`` sends them chunked
- ``/delay/S``     waits S seconds, then 200
- ``/status/N``    answers status N (no body for 1xx, 204 and 304)
- ``/headers?k=v`` 200 with each query parameter as a response header (for hop-by-hop tests;
  a repeated parameter: the header repeated)
- ``/close``       closes the connection without answering
- ``/__log``       the list of every request head seen so far (method, path, headers)
- ``/__reset``     clears that list

A HEAD request gets the head the GET would get, without its body. Each record carries ``peer``,
the gateway's source port, so tests can tell pooled connections apart.

Request bodies are read streaming and hashed, never kept whole, so gigabyte uploads are fine.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import urllib.parse

import httptools

SEEN: list[dict] = []
PATTERN = bytes(range(256)) * 256  # 64 KiB


class Handler(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.hasher = hashlib.sha256()
        self.length = 0
        self.head_only = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self):
        self.url = b""
        self.headers = []
        self.hasher = hashlib.sha256()
        self.length = 0

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body):
        self.hasher.update(body)
        self.length += len(body)

    def on_message_complete(self):
        url = httptools.parse_url(self.url)
        path = url.path.decode()
        query = (url.query or b"").decode()
        method = self.parser.get_method().decode()
        keep_alive = self.parser.should_keep_alive()
        peer = self.transport.get_extra_info("peername")[1]
        record = {"method": method, "path": path, "query": query, "headers": self.headers, "peer": peer}
        if not path.startswith("/__"):
            SEEN.append(record)
        self.head_only = method == "HEAD"
        asyncio.ensure_future(self.answer(method, path, query, keep_alive, record))

    async def answer(self, method, path, query, keep_alive, record):
        t = self.transport
        if path == "/__log":
            return self.send(200, json.dumps(SEEN).encode(), keep_alive)
        if path == "/__reset":
            SEEN.clear()
            return self.send(200, b"{}", keep_alive)
        if path == "/close":
            t.close()
            return
        if path.startswith("/delay/"):
            await asyncio.sleep(float(path.split("/")[2]))
            return self.send(200, b'{"delayed": true}', keep_alive)
        if path.startswith("/status/"):
            return self.send(int(path.split("/")[2]), b"{}", keep_alive)
        if path == "/headers":
            extra = [(k, value) for k, v in urllib.parse.parse_qs(query).items() for value in v]
            return self.send(200, b"{}", keep_alive, extra)
        if path.startswith("/bytes/"):
            size = int(path.split("/")[2])
            chunked = "chunked=1" in query
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            head += b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Content-Length: %d\r\n\r\n" % size
            t.write(head)
            left = 0 if self.head_only else size
            while left > 0:
                if t.is_closing():
                    return  # the gateway went away (a test of clients that stop reading)
                part = PATTERN[: min(left, len(PATTERN))]
                t.write(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
                left -= len(part)
                if t.get_write_buffer_size() > 1 << 20:
                    await asyncio.sleep(0.001)
                    while t.get_write_buffer_size() > 1 << 19 and not t.is_closing():
                        await asyncio.sleep(0.005)
            if chunked and not self.head_only:
                t.write(b"0\r\n\r\n")
            if not keep_alive:
                t.close()
            return
        body = json.dumps(
            dict(record, body_length=self.length, body_sha256=self.hasher.hexdigest())
        ).encode()
        self.send(200, body, keep_alive)

    def send(self, status, body, keep_alive, extra=()):
        if status < 200 or status in (204, 304):
            length, body = b"", b""
        else:
            length = b"Content-Length: %d\r\n" % len(body)
            if self.head_only:
                body = b""
        self.transport.write(
            b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%b%b%b\r\n%b"
            % (
                status,
                length,
                b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in extra),
                b"" if keep_alive else b"Connection: close\r\n",
                body,
            )
        )
        if not keep_alive:
            self.transport.close()


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Handler, "127.0.0.1", port)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
