"""Side-by-side throughput of fastgate and nginx on one upstream, in one run (loopback, wrk).

usage (from the project root): .venv/bin/python bench/perf.py MODE [--seconds S] [--min-ratio R]
  MODE: keyless | token | jwt | basic | oauth
Needs wrk and nginx (apt-get install wrk nginx-light). Starts the checkout's gateway (the current
directory, or FASTGATE_CHECKOUT) with one worker and the memory store, an nginx proxy with one
worker, and an nginx upstream of their own; wrk -t1 -c50 on loopback, two rounds alternating.
No pinning: each proxy is one process and may use up to one core. Prints one line per round and,
last, the ratio fastgate/nginx; exits 0 when the lowest ratio is at least --min-ratio.
This is the measurement the performance targets in the issues refer to.
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

import jwt
import requests

CHECKOUT = pathlib.Path(os.environ.get("FASTGATE_CHECKOUT", os.getcwd())).resolve()
SECRET = "perf-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(url: str, seconds: int, header: str | None) -> tuple[float, float]:
    cmd = ["wrk", "-t1", "-c50", f"-d{seconds}s", "--latency", url]
    if header:
        cmd[1:1] = ["-H", header]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx and int(non2xx.group(1)) > 0:
        raise SystemExit(f"{url}: {non2xx.group(1)} non-2xx responses")
    return rps, float(p99.group(1)) * scale


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["keyless", "token", "jwt", "basic", "oauth"])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--min-ratio", type=float, default=0.8)
    a = ap.parse_args()
    if not shutil.which("wrk") or not shutil.which("nginx"):
        print("needs wrk and nginx (apt-get install wrk nginx-light)")
        return 1
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="fg-perf-"))
    up, ngx = free_port(), free_port()
    key = "perf-key-0123456789abcdef"
    jwt_secret = b"perf-jwt-secret-0123456789abcdef0123"
    jwt_token = jwt.encode({"sub": "bench", "exp": int(time.time()) + 3600}, jwt_secret, algorithm="HS256")
    expected = {"token": key, "keyless": "", "jwt": "Bearer " + jwt_token,
                "basic": "Basic " + base64.b64encode(b"benchuser:bench-password-1").decode(),
                "oauth": ""}[a.mode]
    # oauth: the token is issued by fastgate once it runs, so nginx checks the Bearer form instead.
    check = {"keyless": "", "oauth": 'if ($http_authorization !~ "^Bearer ") { return 401; }'}.get(
        a.mode, 'if ($http_authorization != "' + expected + '") { return 401; }')
    # The upstream and the nginx proxy are separate instances, one worker each, so that the proxy
    # under test never shares its process with the upstream it forwards to.
    (tmp / "up").mkdir()
    (tmp / "up" / "nginx.conf").write_text(f"""
worker_processes 1; pid {tmp}/up/nginx.pid; error_log {tmp}/up/nginx.err warn;
events {{ worker_connections 4096; }}
http {{ access_log off;
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 "hello from upstream\\n"; }} }} }}""")
    (tmp / "nginx.conf").write_text(f"""
worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err warn;
events {{ worker_connections 4096; }}
http {{ access_log off;
  upstream up {{ server 127.0.0.1:{up}; keepalive 64; }}
  server {{ listen 127.0.0.1:{ngx}; location / {{
    {check}
    proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
}}""")
    upstream = subprocess.Popen(["nginx", "-p", str(tmp / "up"), "-c", str(tmp / "up" / "nginx.conf"),
                                 "-g", "daemon off;"])
    nginx = subprocess.Popen(["nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"])
    gw_port = free_port()
    (tmp / "apps").mkdir()
    (tmp / "policies").mkdir(exist_ok=True)
    api = {"api_id": "p", "name": "p", "org_id": "default", "active": True,
           "use_keyless": a.mode == "keyless", "use_standard_auth": a.mode == "token",
           "proxy": {"listen_path": "/", "target_url": f"http://127.0.0.1:{up}", "strip_listen_path": False},
           "version_data": {"not_versioned": True, "versions": {"Default": {"name": "Default"}}}}
    rights = {"p": {"api_id": "p", "api_name": "p", "versions": ["Default"]}}
    if a.mode == "jwt":
        api.update(enable_jwt=True, jwt_signing_method="hmac", jwt_identity_base_field="sub",
                   jwt_source=base64.b64encode(jwt_secret).decode(), jwt_default_policies=["perf"])
        (tmp / "policies").mkdir(exist_ok=True)
        (tmp / "policies" / "perf.json").write_text(json.dumps(
            {"id": "perf", "name": "perf", "org_id": "default", "rate": 10**9, "per": 1, "quota_max": -1,
             "active": True, "access_rights": rights}))
    if a.mode == "basic":
        api.update(use_basic_auth=True)
    if a.mode == "oauth":
        api.update(use_oauth2=True, oauth_meta={"allowed_access_types": ["client_credentials"],
                                                "allowed_authorize_types": ["code"]})
    (tmp / "apps" / "p.json").write_text(json.dumps(api))
    (tmp / "fastgate.toml").write_text(
        f'listen_address = "127.0.0.1"\nlisten_port = {gw_port}\nsecret = "{SECRET}"\n'
        f'app_path = "{tmp / "apps"}"\n[policies]\npolicy_path = "{tmp / "policies"}"\n'
        '[storage]\nurl = "memory://"\n')
    gw = subprocess.Popen([str(CHECKOUT / ".venv/bin/python"), "-m", "fastgate", "run", "--config",
                           str(tmp / "fastgate.toml")], cwd=CHECKOUT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{gw_port}"
        for _ in range(200):
            try:
                if requests.get(base + "/hello", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            print("fastgate did not start")
            return 1
        header = None
        admin = {"X-Tyk-Authorization": SECRET}
        session = {"org_id": "default", "rate": 10**9, "per": 1, "quota_max": -1, "access_rights": rights}
        if a.mode == "token":
            r = requests.post(base + f"/tyk/keys/{key}", headers=admin, json=session)
            header = f"Authorization: {key}"
        elif a.mode == "basic":
            r = requests.post(base + "/tyk/keys/benchuser", headers=admin,
                              json={**session, "basic_auth_data": {"password": "bench-password-1"}})
            header = "Authorization: Basic " + base64.b64encode(b"benchuser:bench-password-1").decode()
        elif a.mode == "jwt":
            r = None
            header = f"Authorization: Bearer {jwt_token}"
        elif a.mode == "oauth":
            r = requests.post(base + "/tyk/oauth/clients/create", headers=admin, json={
                "api_id": "p", "client_id": "perf-client", "secret": "perf-client-secret-1",
                "redirect_uri": "https://client.example.test/cb"})
            token = requests.post(base + "/oauth/token", data={"grant_type": "client_credentials"},
                                  auth=("perf-client", "perf-client-secret-1")).json()["access_token"]
            header = f"Authorization: Bearer {token}"
        else:
            r = None
        if r is not None and r.status_code != 200:
            print(f"set-up failed: {r.status_code} {r.text[:200]}")
            return 1
        wrk(base + "/", 1, header)
        wrk(f"http://127.0.0.1:{ngx}/", 1, header)
        ratios, lat = [], []
        for _ in range(2):
            f_rps, f_p99 = wrk(base + "/", a.seconds, header)
            n_rps, n_p99 = wrk(f"http://127.0.0.1:{ngx}/", a.seconds, header)
            print(f"fastgate {f_rps:.0f} rps p99 {f_p99:.2f} ms | nginx {n_rps:.0f} rps p99 {n_p99:.2f} ms")
            ratios.append(f_rps / n_rps)
            lat.append(f_p99 / n_p99)
        print(f"{a.mode}: fastgate/nginx rps ratio {min(ratios):.2f}-{max(ratios):.2f}, "
              f"p99 ratio {min(lat):.2f}-{max(lat):.2f} (target rps >= {a.min_ratio})")
        return 0 if min(ratios) >= a.min_ratio else 1
    finally:
        for n in (nginx, upstream):
            n.send_signal(signal.SIGQUIT)
        if gw.poll() is None:
            os.killpg(gw.pid, signal.SIGTERM)
        for n in (nginx, upstream):
            n.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
