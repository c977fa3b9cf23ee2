"""The wire fuzzer's short run (tests/kit/wirefuzz.py; bench/fuzz.py runs a million): 10 000
connections of raw, malformed and mutated requests at a real gateway on five auth methods, with a
recording upstream. No 5xx (but 505 for an HTTP/2 request line), no complete request reaches the
upstream for a refused one, and the gateway lives on without a traceback."""

from __future__ import annotations

import asyncio
import base64
import socket

from tests.kit.gateway_api import create_key
from tests.kit.procs import Gateway, free_port
from tests.kit.wirefuzz import FUZZ_POLICIES, FUZZ_SETTINGS, Credentials, Recorder, fuzz_apis, run

INPUTS = 10_000
RIGHTS = {a: {"api_id": a, "api_name": a, "versions": ["Default"]} for a in ("open", "tok", "basic", "hmac")}


def test_ten_thousand_fuzzed_connections(tmp_path):
    async def main():
        loop = asyncio.get_running_loop()
        port = free_port()
        server = await loop.create_server(Recorder, "127.0.0.1", port)
        gw = Gateway(tmp_path, fuzz_apis(f"http://127.0.0.1:{port}"), FUZZ_SETTINGS, policies=FUZZ_POLICIES,
                     wait=False)
        try:
            await loop.run_in_executor(None, gw.ready)
            token = (await loop.run_in_executor(None, create_key, gw, {"access_rights": RIGHTS}))["key"]
            await loop.run_in_executor(None, lambda: create_key(
                gw, {"basic_auth_data": {"password": "pw"}, "access_rights": RIGHTS}, "fuzzuser"))
            creds = Credentials(token=token, basic=base64.b64encode(b"fuzzuser:pw").decode())
            report = await run(gw.port, INPUTS, seed=7, creds=creds, concurrency=32)
            alive = gw.proc.poll() is None
        finally:
            server.close()
            gw.stop()
        return report, alive, gw.log

    report, alive, log = asyncio.run(main())
    assert report.inputs == INPUTS
    assert report.problems() == []
    assert alive and "Traceback" not in log, log[-3000:]
    assert report.statuses[200] > 100 and report.forwarded > 100  # some inputs were valid and passed
    assert report.statuses[400] > 1000  # and most were refused


def test_a_request_pipelined_behind_an_upgrade_that_closes_is_dropped_quietly(make_gateway, up):
    """Found by the fuzzer: the request after an ``Upgrade`` request that also says
    ``Connection: close`` raised inside the parser's Upgrade handling (a traceback, the
    connection aborted). It must be dropped like any request behind a final one."""
    gw = make_gateway(fuzz_apis(up.url)[:1])
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"GET /open/first HTTP/1.1\r\nHost: gw\r\nConnection: close, Upgrade\r\nUpgrade: websocket\r\n\r\n"
                  b"GET /open/second HTTP/1.1\r\nHost: gw\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 1
    assert [r["path"] for r in up.seen()] == ["/first"]
    assert "Traceback" not in gw.log
