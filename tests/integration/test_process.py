"""The gateway as a process: the CLI, config errors, environment overrides, start-up log,
workers on one port, graceful SIGTERM, and reloads (SIGHUP, /tyk/reload) under live connections.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fastgate.build import describe
from tests.kit.procs import ROOT, SECRET, Gateway, free_port, run_cli, wait_port, write_config
from tests.kit.apis import classic_api
from tests.kit.raw import RawClient
from tests.kit.redisdb import PROCESS_TESTS_URL

FASTGATE = str(Path(sys.executable).parent / "fastgate")
FORBIDDEN = {"status": "error", "message": "Attempted administrative access with invalid or missing key!"}
REDIS_URL = PROCESS_TESTS_URL


def make_dir(tmp_path: Path, apis: dict[str, object], settings: dict[str, object] | None = None) -> Path:
    """A config directory with ``apps/<name>`` files (dicts are written as JSON, str as is)."""
    (tmp_path / "apps").mkdir()
    (tmp_path / "policies").mkdir()
    for name, content in apis.items():
        text = content if isinstance(content, str) else json.dumps(content)
        (tmp_path / "apps" / name).write_text(text)
    base = {"listen_port": free_port(), "secret": SECRET, "app_path": "apps", "policies": {"policy_path": "policies"}}
    base.update(settings or {})
    return write_config(tmp_path, base)


def get(port: int, path: str, headers: str = "") -> tuple[int, bytes]:
    with RawClient(port) as c:
        resp = c.request("GET", path, headers=headers + "Connection: close\r\n")
    return resp.status, resp.body


# ---- the command line ------------------------------------------------------------------------


def test_version():
    out = run_cli("version")
    assert out.returncode == 0
    assert re.fullmatch(r"fastgate \d+\.\d+\.\d+\S* \((compiled: mypyc, \d+ modules|pure Python)\)\n", out.stdout)
    # the command says the build this checkout runs: the one the tests import
    assert out.stdout.endswith(f"({describe()})\n")


def test_check_accepts_a_good_config(tmp_path, upstream):
    config = make_dir(tmp_path, {"good.json": classic_api("good", "/good/", upstream.url)})
    out = run_cli("check", "--config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ""
    assert "1 API definition valid" in out.stderr


def test_check_reports_each_bad_definition_as_file_field_problem(tmp_path, upstream):
    apis = {
        "a-good.json": classic_api("good", "/good/", upstream.url),
        "b-not-json.json": "{not json",
        "c-no-listen-path.json": classic_api("nolisten", "", upstream.url),
        "d-bad-target.json": classic_api("badtarget", "/bt/", "ftp://example.com/"),
        "e-same-id.json": classic_api("good", "/other/", upstream.url),
        "f-same-path.json": classic_api("clash", "/good/", upstream.url),
        "g-wrong-type.json": classic_api("wrongtype", "/wt/", upstream.url, use_keyless="maybe"),
        "h-oas-no-upstream.json": {
            "openapi": "3.0.3",
            "info": {"title": "t", "version": "1"},
            "paths": {},
            "x-tyk-api-gateway": {"info": {"id": "oas1", "name": "o"}, "server": {"listenPath": {"value": "/o/"}}},
        },
    }
    config = make_dir(tmp_path, apis)
    out = run_cli("check", "--config", str(config))
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    apps = tmp_path / "apps"
    expected = {
        "b-not-json.json": ("", "not valid JSON"),
        "c-no-listen-path.json": ("proxy.listen_path", "missing"),
        "d-bad-target.json": ("proxy.target_url", "scheme 'ftp' is not supported"),
        "e-same-id.json": ("api_id", "'good' is already used by"),
        "f-same-path.json": ("proxy.listen_path", "'/good/' is already served by"),
        "g-wrong-type.json": ("use_keyless", "Expected `bool"),
        "h-oas-no-upstream.json": ("x-tyk-api-gateway.upstream.url", "missing"),
    }
    assert len(lines) == len(expected), lines
    for name, (field, what) in expected.items():
        (line,) = [line for line in lines if line.startswith(f"{apps / name}: ")]
        rest = line[len(f"{apps / name}: ") :]
        if field:
            assert rest.startswith(f"{field}: "), line
        assert what in rest, line
    assert not any(line.startswith(str(apps / "a-good.json")) for line in lines)
    assert "1 API definition valid, 7 problems" in out.stderr


def test_check_reports_a_bad_config_file(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('listen_port = 8080\nlisten_adress = "127.0.0.1"\n')
    out = run_cli("check", "--config", str(config))
    assert out.returncode == 1
    assert f"{config}: listen_adress: unknown key" in out.stdout + out.stderr


@pytest.mark.parametrize(
    "toml,key,what",
    [
        ('mystery = 1\n', "mystery", "unknown key"),
        ('[http_server_options]\nread_timeout_s = 5\n', "http_server_options.read_timeout_s", "unknown key"),
        ('listen_port = "eighty"\n', "listen_port", "Expected `int`"),
        ('[http_server_options]\nidle_timeout = "long"\n', "http_server_options.idle_timeout", "Expected `float`"),
        ('[storage]\nurl = "mongodb://x"\n', "storage.url", "neither memory:// nor redis://"),
        ('workers = 2\n[storage]\nurl = "memory://"\n', "storage.url", "use redis://"),
    ],
    ids=["unknown-key", "unknown-section-key", "wrong-type", "wrong-section-type", "bad-store", "memory-workers"],
)
def test_bad_config_stops_start_up_naming_the_key(tmp_path, toml, key, what):
    config = tmp_path / "fastgate.toml"
    (tmp_path / "apps").mkdir()
    config.write_text(f'listen_port = {free_port()}\n' + toml if not toml.startswith("listen_port") else toml)
    out = run_cli("run", "--config", str(config))
    assert out.returncode == 1
    message = out.stderr
    assert f"{config}: {key}: " in message, message
    assert what in message


# ---- environment overrides -------------------------------------------------------------------


def test_environment_overrides_config_keys(tmp_path, upstream):
    port = free_port()
    gw = Gateway(
        tmp_path,
        [classic_api("k", "/k/", upstream.url)],
        {"http_server_options": {"max_header_bytes": 65536}},
        env={
            "FASTGATE_LISTEN_PORT": str(port),
            "FASTGATE_SECRET": "from-the-environment",
            "FASTGATE_HTTP_SERVER_OPTIONS_MAX_HEADER_BYTES": "2048",
        },
        port=port,
    )
    try:
        # listen_port came from the environment (the file names another port).
        assert gw.settings["listen_port"] == port
        assert get(port, "/k/echo")[0] == 200
        assert get(port, "/k/echo", headers="X-Big: " + "b" * 3000 + "\r\n")[0] == 431
        assert gw.admin("GET", "/tyk/reload", secret=SECRET)[0] == 403
        assert gw.admin("GET", "/tyk/reload", secret="from-the-environment")[0] == 200
    finally:
        gw.stop()


def test_environment_override_file_value(tmp_path, upstream):
    file_port, env_port = free_port(), free_port()
    config = make_dir(tmp_path, {"k.json": classic_api("k", "/k/", upstream.url)}, {"listen_port": file_port})
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTGATE_")}
    env["FASTGATE_LISTEN_PORT"] = str(env_port)
    proc = subprocess.Popen([FASTGATE, "run", "--config", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(env_port, proc=proc)
        assert get(env_port, "/k/echo")[0] == 200
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", file_port), timeout=0.5).close()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


@pytest.mark.parametrize(
    "name,value,needle",
    [
        ("FASTGATE_NO_SUCH_KEY", "1", "FASTGATE_NO_SUCH_KEY: no such config key"),
        ("FASTGATE_HTTP_SERVER_OPTIONS_NOPE", "1", "FASTGATE_HTTP_SERVER_OPTIONS_NOPE: no such config key"),
        ("FASTGATE_LISTEN_PORT", "eighty", "listen_port: Expected `int`"),
        ("FASTGATE_HTTP_SERVER_OPTIONS_IDLE_TIMEOUT", "soon", "http_server_options.idle_timeout: Expected `float`"),
    ],
)
def test_bad_environment_override_stops_start_up(tmp_path, upstream, name, value, needle):
    config = make_dir(tmp_path, {"k.json": classic_api("k", "/k/", upstream.url)})
    out = run_cli("run", "--config", str(config), env={name: value})
    assert out.returncode == 1
    assert needle in out.stderr


# ---- running ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[FASTGATE], [sys.executable, "-m", "fastgate"]], ids=["script", "module"])
def test_run_starts_and_logs_loaded_and_rejected_apis(tmp_path, upstream, command):
    apis = {
        "good.json": classic_api("good-api", "/good/", upstream.url),
        "broken.json": classic_api("broken-api", "/broken/", "not a url"),
        "off.json": classic_api("off-api", "/off/", upstream.url, active=False),
    }
    config = make_dir(tmp_path, apis)
    port = int(re.search(r"listen_port = (\d+)", config.read_text()).group(1))
    log_path = tmp_path / "log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTGATE_")}
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([*command, "run", "--config", str(config)], cwd=ROOT, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait_port(port, proc=proc)
            assert get(port, "/good/echo")[0] == 200
            assert get(port, "/off/echo")[0] == 404
            assert get(port, "/broken/echo")[0] == 404
            status, body = get(port, "/hello")
            assert status == 200
            assert json.loads(body)["details"]["apis"] == {"status": "pass", "loaded": 1, "rejected": 1}
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
    log = log_path.read_text()
    assert f"127.0.0.1:{port}" in log
    assert re.search(r"loaded API 'good-api'.*/good/", log)
    assert re.search(r"rejected API definition: .*broken\.json: proxy\.target_url: ", log)
    assert "off-api" in log  # skipped as inactive, and said so
    # Nothing is logged per request.
    assert "/good/echo" not in log


def test_hello_is_a_json_health_document(make_gateway, upstream):
    gw = make_gateway([classic_api("k", "/k/", upstream.url)])
    with RawClient(gw.port) as c:
        resp = c.request("GET", "/hello")
    assert resp.status == 200
    assert resp.header("content-type") == "application/json"
    doc = resp.json()
    assert doc["status"] == "pass"
    assert doc["details"]["apis"]["loaded"] == 1


# ---- workers ---------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
                    inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def test_two_workers_share_one_port(make_gateway, upstream):
    gw = make_gateway([classic_api("k", "/k/", upstream.url)], {"workers": 2, "storage": {"url": REDIS_URL}})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(_listening_inodes(gw.port)) < 2:
        time.sleep(0.05)
    workers = _children(gw.proc.pid)
    assert len(workers) == 2
    listeners = _listening_inodes(gw.port)
    assert len(listeners) == 2  # two sockets on one port: SO_REUSEPORT
    assert all(_socket_inodes(w) & listeners for w in workers), "each worker owns one listener"
    upstream.reset()
    for i in range(40):
        assert get(gw.port, f"/k/echo/{i}")[0] == 200
    # Each worker keeps its own upstream pool: two workers answering means two upstream peers.
    peers = {r["peer"] for r in upstream.seen()}
    assert len(peers) == 2
    # A reload through one worker reaches both.
    (gw.dir / "apps" / "late.json").write_text(json.dumps(classic_api("late", "/late/", upstream.url)))
    assert gw.admin("GET", "/tyk/reload")[0] == 200
    deadline = time.monotonic() + 5
    statuses: list[int] = []
    while time.monotonic() < deadline:
        statuses = [get(gw.port, "/late/echo")[0] for _ in range(20)]
        if statuses == [200] * 20:
            break
        time.sleep(0.1)
    assert statuses == [200] * 20
    assert gw.stop() == 0
    for w in workers:
        assert not os.path.exists(f"/proc/{w}") or "zombie" in open(f"/proc/{w}/status").read().lower()


# ---- signals and reloads ---------------------------------------------------------------------


def test_sigterm_lets_an_in_flight_request_finish_then_exits_0(make_gateway, upstream):
    gw = make_gateway([classic_api("k", "/k/", upstream.url)])
    result: dict[str, object] = {}

    def slow() -> None:
        with RawClient(gw.port, timeout=10) as c:
            resp = c.request("GET", "/k/delay/2")
            result["status"], result["body"] = resp.status, resp.body
            result["closed"] = c.closed_by_peer(2)

    idle = RawClient(gw.port)
    assert idle.request("GET", "/k/echo").status == 200
    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.4)
    start = time.monotonic()
    gw.signal(signal.SIGTERM)
    # An idle keep-alive connection is closed at once; new connections are refused.
    assert idle.closed_by_peer(1.5)
    idle.close()
    time.sleep(0.1)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gw.port), timeout=0.5).close()
    thread.join(10)
    assert result["status"] == 200 and json.loads(result["body"]) == {"delayed": True}
    assert result["closed"]  # the connection is closed after the last response
    assert gw.proc.wait(10) == 0
    assert time.monotonic() - start < 5
    assert "stopped" in gw.log


def test_sighup_reloads_definitions_without_dropping_connections(make_gateway, upstream):
    gw = make_gateway([classic_api("k", "/k/", upstream.url)])
    with RawClient(gw.port) as c:
        assert c.request("GET", "/k/echo").status == 200
        assert c.request("GET", "/added/echo").status == 404
        (gw.dir / "apps" / "added.json").write_text(json.dumps(classic_api("added", "/added/", upstream.url)))
        (gw.dir / "apps" / "k.json").unlink()
        gw.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while c.request("GET", "/added/echo").status != 200:
            assert time.monotonic() < deadline, "the new API never appeared"
            time.sleep(0.05)
        # Same connection throughout: the reload dropped nothing; the removed API is gone.
        assert c.request("GET", "/k/echo").status == 404
    assert "reloaded" in gw.log


def test_tyk_reload_needs_the_secret(make_gateway, upstream):
    gw = make_gateway([classic_api("k", "/k/", upstream.url)])
    for secret in (None, "wrong", SECRET + "x", SECRET[:-1], ""):
        with RawClient(gw.port) as c:
            header = "" if secret is None else f"X-Tyk-Authorization: {secret}\r\n"
            resp = c.request("GET", "/tyk/reload", host="localhost", headers=header)
        assert resp.status == 403, secret
        assert resp.header("content-type") == "application/json"
        assert json.loads(resp.body) == FORBIDDEN
        assert resp.body == b'{"status":"error","message":"Attempted administrative access with invalid or missing key!"}'


def test_tyk_reload_picks_up_a_new_definition_while_a_connection_stays_open(make_gateway, upstream):
    gw = make_gateway([classic_api("k", "/k/", upstream.url)])
    with RawClient(gw.port) as c:
        assert c.request("GET", "/k/echo").status == 200
        (gw.dir / "apps" / "added.json").write_text(json.dumps(classic_api("added", "/added/", upstream.url)))
        (gw.dir / "apps" / "broken.json").write_text("{")
        resp = c.request("GET", "/tyk/reload", host="localhost", headers=f"X-Tyk-Authorization: {SECRET}\r\n")
        assert resp.status == 200
        assert json.loads(resp.body)["status"] == "ok"
        # One request, one reload (a body-less Gateway API request must be dispatched once).
        time.sleep(0.2)
        assert gw.log.count("reloaded:") == 1
        # Reload is synchronous in this process: the new API answers on the same connection.
        upstream.reset()
        assert c.request("GET", "/added/echo").status == 200
        assert c.request("GET", "/k/echo").status == 200
    assert [r["path"] for r in upstream.seen()] == ["/echo", "/echo"]
    assert re.search(r"rejected API definition: .*broken\.json", gw.log)


def test_sigterm_grace_period_bounds_the_wait(make_gateway, upstream):
    gw = make_gateway(
        [classic_api("k", "/k/", upstream.url)], {"http_server_options": {"shutdown_grace_period": 1.0}}
    )
    result: dict[str, object] = {}

    def too_slow() -> None:
        with RawClient(gw.port, timeout=10) as c:
            c.send(b"GET /k/delay/5 HTTP/1.1\r\nHost: a\r\n\r\n")
            result["data"] = c.read_all(8)

    thread = threading.Thread(target=too_slow)
    thread.start()
    time.sleep(0.3)
    start = time.monotonic()
    gw.signal(signal.SIGTERM)
    assert gw.proc.wait(5) == 0
    assert time.monotonic() - start < 2.5  # the grace period, not the request, decided
    thread.join(10)
    assert result["data"] == b""  # cut off, never half-answered


def test_gateway_api_on_its_own_port(make_gateway, upstream):
    control = free_port()
    gw = make_gateway([classic_api("k", "/k/", upstream.url)], {"control_api_port": control})
    wait_port(control)
    # Not on the main listener...
    assert get(gw.port, "/tyk/reload", headers=f"X-Tyk-Authorization: {SECRET}\r\n")[0] == 404
    assert get(gw.port, "/k/echo")[0] == 200
    # ...but on its own, with the same guard.
    status, body = get(control, "/tyk/reload")
    assert status == 403 and json.loads(body) == FORBIDDEN
    assert get(control, "/tyk/reload", headers=f"X-Tyk-Authorization: {SECRET}\r\n")[0] == 200
    # The control listener proxies nothing.
    assert get(control, "/k/echo")[0] in (403, 404)


def test_a_request_in_flight_during_a_reload_finishes_on_the_api_it_started_with(make_gateway, upstream):
    gw = make_gateway([classic_api("k", "/k/", upstream.url)])
    result: dict[str, object] = {}

    def slow() -> None:
        with RawClient(gw.port, timeout=10) as c:
            resp = c.request("GET", "/k/delay/1")
            result["status"] = resp.status
            # The connection survives the reload; the API it used is gone now.
            result["after"] = c.request("GET", "/k/echo").status

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    (gw.dir / "apps" / "k.json").unlink()
    assert gw.admin("GET", "/tyk/reload")[0] == 200
    thread.join(10)
    assert result == {"status": 200, "after": 404}
