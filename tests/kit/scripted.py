"""A tiny upstream whose every connection follows a script written in the test.

Some behaviours cannot be asked of the regular upstream: closing a keep-alive connection just as
the gateway reuses it, or answering a HEAD with body bytes it must not send. ``ScriptedUpstream``
accepts connections in a thread and hands the n-th one to ``script(conn, n)``; ``conn`` reads
whole request heads (and Content-Length bodies) and writes raw bytes. What each connection
received is kept in ``requests`` as ``(connection_index, method, path, body)``.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable

__all__ = ["ScriptedUpstream", "ScriptedConnection"]


class ScriptedConnection:
    """One accepted connection with a small request reader."""

    def __init__(self, sock: socket.socket, index: int, upstream: "ScriptedUpstream") -> None:
        self.sock = sock
        self.index = index
        self.upstream = upstream
        self.buf = b""

    def read_request(self) -> tuple[str, str, bytes] | None:
        """The next request ``(method, path, body)``, or ``None`` when the peer closed."""
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        while len(self.buf) < length:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        body, self.buf = self.buf[:length], self.buf[length:]
        with self.upstream.lock:
            self.upstream.requests.append((self.index, method, path, body))
        return method, path, body

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def respond(self, body: bytes = b"ok", status: int = 200, extra: bytes = b"") -> None:
        """A keep-alive response with a Content-Length body."""
        self.send(b"HTTP/1.1 %d OK\r\nContent-Length: %d\r\n%b\r\n%b" % (status, len(body), extra, body))

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class ScriptedUpstream:
    """Listens on a free loopback port; each connection runs ``script`` in its own thread."""

    def __init__(self, script: Callable[[ScriptedConnection, int], None]) -> None:
        self.script = script
        self.requests: list[tuple[int, str, str, bytes]] = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            index = self.accepted
            self.accepted += 1
            conn = ScriptedConnection(sock, index, self)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: ScriptedConnection) -> None:
        try:
            self.script(conn, conn.index)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopped = True
        self.listener.close()
