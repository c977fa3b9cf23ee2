"""Starting real processes for the tests: the upstream and fastgate itself, on free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.kit.raw import RawResponse

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``FASTGATE_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTGATE_")}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    """``python -m fastgate *args`` to completion in the repository, with ``env`` added to a clean
    environment; output captured as text."""
    return subprocess.run([sys.executable, "-m", "fastgate", *args], cwd=ROOT, env=clean_env(**(env or {})),
                          capture_output=True, text=True, timeout=timeout, check=False)


class Upstream:
    """The test upstream (``tests/kit/upstream.py``) in its own process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.kit.upstream", str(self.port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        wait_port(self.port, proc=self.proc)

    def seen(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/__log", timeout=5) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        urllib.request.urlopen(f"{self.url}/__reset", timeout=5).read()

    def stop(self) -> None:
        """Terminate the process (killed when it does not exit within 5 s)."""
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def echo(resp: RawResponse) -> dict[str, Any]:
    """The upstream's ``/echo`` record in a 200 answer (fails the test on any other status)."""
    assert resp.status == 200, (resp.status, resp.body[:300])
    return json.loads(resp.body)


def headers_of(record: dict[str, Any]) -> dict[str, str]:
    """An echo record's request headers, names lower-cased (the last of repeated ones wins)."""
    return {k.lower(): v for k, v in record["headers"]}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def write_config(directory: Path, settings: dict[str, Any]) -> Path:
    """Write a fastgate.toml from a dict (nested dicts become tables, lists of dicts inside a
    table arrays of tables: ``{"http_server_options": {"certificates": [{...}]}}``)."""
    lines: list[str] = []
    tables: list[str] = []
    for key, value in settings.items():
        if isinstance(value, dict):
            tables.append(f"\n[{key}]")
            arrays = {k: v for k, v in value.items() if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)}
            tables.extend(f"{k} = {_toml_value(v)}" for k, v in value.items() if k not in arrays)
            for name, items in arrays.items():
                for item in items:
                    tables.append(f"\n[[{key}.{name}]]")
                    tables.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    path = directory / "fastgate.toml"
    path.write_text("\n".join(lines + tables) + "\n")
    return path


class Gateway:
    """fastgate started as ``python -m fastgate run`` on a config of the test's own."""

    def __init__(
        self,
        directory: Path,
        apis: list[dict[str, Any]],
        settings: dict[str, Any] | None = None,
        policies: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        wait: bool = True,
    ) -> None:
        self.dir = directory
        self.port = port or free_port()
        tls = bool(((settings or {}).get("http_server_options") or {}).get("use_ssl"))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        (directory / "apps").mkdir(exist_ok=True)
        (directory / "policies").mkdir(exist_ok=True)
        for api in apis:
            name = api.get("api_id") or api["x-tyk-api-gateway"]["info"]["id"]
            (directory / "apps" / f"{name}.json").write_text(json.dumps(api))
        for pol_id, pol in (policies or {}).items():
            (directory / "policies" / f"{pol_id}.json").write_text(json.dumps(pol))
        base: dict[str, Any] = {
            "listen_address": "127.0.0.1",
            "listen_port": self.port,
            "secret": SECRET,
            "app_path": "apps",
            "policies": {"policy_path": "policies"},
        }
        for key, value in (settings or {}).items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        self.settings = base
        self.config = write_config(directory, base)
        self.log_path = directory / "gateway.log"
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.start(wait=wait)

    def start(self, wait: bool = True) -> None:
        """Spawn the process; with ``wait`` (the default) return once it listens, else call
        ``ready()`` later (several gateways then start side by side)."""
        env = clean_env(**self.env)
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastgate", "run", "--config", str(self.config)],
            cwd=ROOT,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
        if wait:
            self.ready()

    def ready(self) -> None:
        """Wait until the gateway listens (fails when the process exits first)."""
        wait_port(self.port, proc=self.proc)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def admin(self, method: str, path: str, body: Any = None, secret: str = SECRET, timeout: float = 10
              ) -> tuple[int, Any]:
        """One Gateway API call: ``(status, decoded JSON body)`` (the raw bytes when not JSON)."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if secret is not None:
            req.add_header("X-Tyk-Authorization", secret)
        # A TLS gateway's certificate is the test's own: its Gateway API is called without checking it.
        context = ssl._create_unverified_context() if self.url.startswith("https") else None
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait for the exit code (SIGKILL after ``timeout``)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log_file.close()
        return code


def stop_all(gateways: list[Gateway]) -> None:
    """Stop several gateways with overlapping graceful shutdowns: SIGTERM to each, then wait."""
    for gw in gateways:
        if gw.proc is not None and gw.proc.poll() is None:
            gw.proc.send_signal(signal.SIGTERM)
    for gw in gateways:
        gw.stop()
