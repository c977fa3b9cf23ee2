"""A real upstream for the tests: its own process, raw asyncio + httptools, recording what it saw.

Run as ``python -m tests.support.upstream PORT``. Behaviour by path (after any listen path is
stripped by the gateway):

- ``/echo...``     200 JSON: method, path, query, headers (as a list), body length and sha256
- ``/bytes/N``     N bytes of a repeating pattern; ``?chunked=1`` sends them chunked
- ``/delay/S``     waits S seconds, then 200
- ``/status/N``    answers status N
- ``/close``       closes the connection without answering
- ``/__log``       the list of every request head seen so far (method, path, headers)
- ``/__reset``     clears that list

Request bodies are read streaming and hashed, never kept whole, so gigabyte uploads are fine.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys

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
        record = {"method": method, "path": path, "query": query, "headers": self.headers}
        if not path.startswith("/__"):
            SEEN.append(record)
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
        if path.startswith("/bytes/"):
            size = int(path.split("/")[2])
            chunked = "chunked=1" in query
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            head += b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Content-Length: %d\r\n\r\n" % size
            t.write(head)
            left = size
            while left > 0:
                part = PATTERN[: min(left, len(PATTERN))]
                t.write(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
                left -= len(part)
                if t.get_write_buffer_size() > 1 << 20:
                    await asyncio.sleep(0.001)
                    while t.get_write_buffer_size() > 1 << 19 and not t.is_closing():
                        await asyncio.sleep(0.005)
            if chunked:
                t.write(b"0\r\n\r\n")
            if not keep_alive:
                t.close()
            return
        body = json.dumps(
            dict(record, body_length=self.length, body_sha256=self.hasher.hexdigest())
        ).encode()
        self.send(200, body, keep_alive)

    def send(self, status, body, keep_alive):
        self.transport.write(
            b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%b\r\n%b"
            % (status, len(body), b"" if keep_alive else b"Connection: close\r\n", body)
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
