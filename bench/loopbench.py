"""The gateway's whole Python request path, without sockets: µs per proxied request.

usage (from the project checkout):
    .venv/bin/python bench/loopbench.py MODE [--n N] [--repeat R] [--clock wall|cpu] [--profile cprofile]
MODE: keyless | token | jwt | basic | ext-oauth | oidc (the last two run bench/idp_scenarios.py's IdP in a thread) | plugin-tyk | plugin-native | plugin-native-inline | or-second. The checkout in the current directory is imported. A real Gateway (store, policies, compiled API) is built
one client
HttpConnection and one pooled UpstreamConnection get fake transports
each iteration feeds a
wrk-like request to the client side and an nginx-like response to the upstream side, and checks
the client got a response. What is timed is exactly the Python that runs per request (callbacks,
stages, head building, pool), not uvloop's socket code nor the kernel.
It imports the module paths of this checkout (server/protocol.py, server/upstream.py, gateway.py);
follow the code when the layout changes. It prints which build ran (`fastgate version`'s words):
compare the mypyc-compiled build (`make install`) with the pure one (`make dev`).
"""
from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.getcwd())

import uvloop

SECRET = "perf-secret-0123456789"
KEY = "perf-key-0123456789abcdef"
JWT_SECRET = b"perf-jwt-secret-0123456789abcdef0123"

RESP = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 01 Dec 2025 05:00:00 GMT\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 20\r\nConnection: keep-alive\r\n\r\nhello from upstream\n")


class FakeTransport:
    def __init__(self, peer=("127.0.0.1", 40000)):
        self.out = []
        self.peer = peer
        self.closed = False

    def get_extra_info(self, name, default=None):
        return {"peername": self.peer, "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data):
        self.out.append(data)

    def writelines(self, data):
        self.out.append(b"".join(data))

    def pause_reading(self): pass
    def resume_reading(self): pass
    def is_closing(self): return self.closed
    def close(self): self.closed = True
    def abort(self): self.closed = True
    def set_write_buffer_limits(self, *a, **k): pass


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["keyless", "token", "jwt", "basic", "ext-oauth", "oidc", "plugin-tyk", "plugin-native",
                                     "plugin-native-inline", "or-second"])
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", default="none")
    # CPU time of this process: on a machine shared with other work, wall time also counts the
    # time the process waited for a core.
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--no-metrics", action="store_true", help="enable_metrics = false: nothing counted per request")
    ap.add_argument("--analytics", action="store_true",
                    help="queue a Tyk analytics record per request and encode them (msgpack) every 1000 "
                         "requests, as the pusher does, without the Redis round trip")
    a = ap.parse_args()
    from fastgate.config import load_config
    from fastgate.gateway import Gateway
    from fastgate.services import start_services
    from fastgate.server.protocol import HttpConnection
    from fastgate.server.upstream import UpstreamConnection
    from fastgate import clock
    import jwt

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="fgloop-"))
    atexit.register(shutil.rmtree, tmp, True)
    (tmp / "apps").mkdir()
    (tmp / "policies").mkdir()
    up_port = 9000
    api = {"api_id": "p", "name": "p", "org_id": "default", "active": True,
           "use_keyless": a.mode == "keyless", "use_standard_auth": a.mode == "token",
           "proxy": {"listen_path": "/", "target_url": f"http://127.0.0.1:{up_port}", "strip_listen_path": False},
           "version_data": {"not_versioned": True, "versions": {"Default": {"name": "Default"}}}}
    rights = {"p": {"api_id": "p", "api_name": "p", "versions": ["Default"]}}
    if a.mode == "jwt":
        api.update(enable_jwt=True, jwt_signing_method="hmac", jwt_identity_base_field="sub",
                   jwt_source=base64.b64encode(JWT_SECRET).decode(), jwt_default_policies=["perf"])
        (tmp / "policies" / "perf.json").write_text(json.dumps(
            {"id": "perf", "name": "perf", "org_id": "default", "rate": 10**9, "per": 1, "quota_max": -1,
             "active": True, "access_rights": rights}))
    if a.mode == "basic":
        api.update(use_basic_auth=True)
    if a.mode in ("ext-oauth", "oidc"):  # issue 13: an IdP in a thread of this process
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
        import idp_scenarios
        idp = idp_scenarios.start_idp()
        (tmp / "policies" / "perf.json").write_text(json.dumps(
            {"id": "perf", "name": "perf", "org_id": "default", "rate": 10**9, "per": 1, "quota_max": -1,
             "active": True, "access_rights": rights}))
        if a.mode == "ext-oauth":
            api.update(external_oauth={"enabled": True, "providers": [{"introspection": {
                "enabled": True, "url": idp + "/introspect", "client_id": "c", "client_secret": "s",
                "cache": {"enabled": True, "timeout": 3600}}}]})
        else:
            api.update(use_openid=True, openid_options={"providers": [
                {"issuer": idp + "/idp", "client_ids": {base64.b64encode(b"bench-app").decode(): "perf"}}]})
    plugins = pathlib.Path(__file__).resolve().parent / "configs" / "plugins"
    if a.mode == "plugin-tyk":
        api.update(custom_plugin_auth_enabled=True, custom_middleware={
            "driver": "python", "auth_check": {"name": "BenchAuth", "path": str(plugins / "tyk_auth.py")}})
    if a.mode.startswith("plugin-native"):
        name = "check_inline" if a.mode.endswith("inline") else "check"
        api.update(custom_plugin_auth_enabled=True, custom_middleware={
            "driver": "python", "auth_check": {"name": name, "path": str(plugins / "native_auth.py")}})
    if a.mode == "or-second":  # JWT OR a key; the key (second) matches
        api.update(enable_jwt=True, use_standard_auth=True, jwt_signing_method="hmac", jwt_identity_base_field="sub",
                   jwt_source=base64.b64encode(JWT_SECRET).decode(),
                   auth_configs={"authToken": {"auth_header_name": "X-Api-Key"}},
                   fastgate_security={"requirements": [["jwt"], ["auth_token"]]})
    (tmp / "apps" / "p.json").write_text(json.dumps(api))
    (tmp / "fastgate.toml").write_text(
        f'listen_address = "127.0.0.1"\nlisten_port = 1\nsecret = "{SECRET}"\n'
        + ("enable_metrics = false\n" if a.no_metrics else "")
        + f'app_path = "{tmp / "apps"}"\n[policies]\npolicy_path = "{tmp / "policies"}"\n'
        + '[storage]\nurl = "memory://"\n')
    import logging
    logging.disable(logging.INFO)
    config = load_config(tmp / "fastgate.toml")
    gw = Gateway(config)
    drain = None
    if a.analytics:
        from fastgate.observe.analytics import Analytics, encode_record
        gw.analytics = Analytics(config)
        queue = gw.analytics.queue

        def drain():
            while queue:
                encode_record(queue.popleft())
    await start_services(gw.services, gw.reload)
    clock.reset()
    gw.load_apis()
    # No tick runs: clock.now stays fixed, so no deadline fires during the loop.

    ct = FakeTransport()
    client = HttpConnection(gw)
    client.connection_made(ct)

    async def settle(pred, what):
        for i in range(20000):
            if pred():
                return
            await asyncio.sleep(0 if i < 10000 else 0.001)
        raise SystemExit(f"timed out: {what}")

    def admin(method, path, body):
        raw = json.dumps(body).encode()
        ct.out.clear()
        client.data_received(
            b"%s %s HTTP/1.1\r\nHost: localhost\r\nX-Tyk-Authorization: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (method, path, SECRET.encode(), len(raw), raw))

    # As bench/scenarios.py's key: a rate limit and a quota the run never reaches, so both limit
    # steps do their full work on every request.
    session = {"org_id": "default", "rate": 10**9, "per": 1, "quota_max": 10**12, "quota_renewal_rate": 3600,
               "access_rights": rights}
    auth = b""
    if a.mode in ("token", "or-second"):
        admin(b"POST", f"/tyk/keys/{KEY}".encode(), session)
        await settle(lambda: ct.out, "key")
        assert b" 200 " in ct.out[0], ct.out
        auth = KEY.encode()
    elif a.mode == "basic":
        admin(b"POST", b"/tyk/keys/benchuser", {**session, "basic_auth_data": {"password": "bench-password-1"}})
        await settle(lambda: ct.out, "key")
        assert b" 200 " in ct.out[0], ct.out
        auth = b"Basic " + base64.b64encode(b"benchuser:bench-password-1")
    elif a.mode == "jwt":
        auth = b"Bearer " + jwt.encode({"sub": "bench", "exp": int(time.time()) + 3600}, JWT_SECRET,
                                       algorithm="HS256").encode()
    elif a.mode == "ext-oauth":
        import hashlib
        admin(b"POST", f"/tyk/keys/{hashlib.md5(b'bench-user').hexdigest()}".encode(), session)
        await settle(lambda: ct.out, "key")
        auth = b"Bearer " + idp_scenarios.BENCH_TOKEN.encode()
    elif a.mode == "oidc":
        auth = b"Bearer " + idp_scenarios.id_token(idp + "/idp").encode()
    if a.mode.startswith("plugin"):
        auth = b"bench-key-0123456789abcdef"
    name = b"X-Api-Key" if a.mode == "or-second" else b"Authorization"
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" + (name + b": " + auth + b"\r\n" if auth else b"") + b"\r\n"

    # one pooled upstream connection
    api_obj = gw.apis["p"]
    pool = gw.pools.get(api_obj.upstream)
    ut = FakeTransport(("127.0.0.1", 9000))
    up = UpstreamConnection(pool)
    pool.open.add(up)
    up.connection_made(ut)
    pool.release(up)

    async def one_slow():
        ct.out.clear()
        ut.out.clear()
        client.data_received(req)
        await settle(lambda: ut.out, "upstream request")
        up.data_received(RESP)
        assert ct.out and b" 200 " in ct.out[0], (ct.out, ut.out)

    # warm (credential caches, bcrypt off the loop, etc.)
    for _ in range(20):
        await one_slow()
    print("upstream request:", ut.out[0])
    print("client response:", ct.out[0])

    # fast loop: assumes the stages are synchronous after warm-up; falls back otherwise
    cout, uout = ct.out, ut.out
    feed_c, feed_u = client.data_received, up.data_received

    def fast(n):
        if drain is not None:
            for _ in range(n // 1000):
                for _ in range(1000):
                    feed_c(req)
                    feed_u(RESP)
                drain()
                cout.clear()
                uout.clear()
        for _ in range(n if drain is None else n % 1000):
            feed_c(req)
            feed_u(RESP)
        cout.clear()
        uout.clear()

    cout.clear()
    uout.clear()
    feed_c(req)
    sync = bool(uout)
    if sync:
        feed_u(RESP)
    else:
        await settle(lambda: uout, "async stage")
        feed_u(RESP)
        uout.clear()  # the slow loop waits for each request's own upstream write
        cout.clear()
    print("stages synchronous after warm-up:", sync)

    async def slow(n):
        for _ in range(n):
            feed_c(req)
            if not uout:
                await settle(lambda: uout or cout, "u")
                assert uout, cout
            feed_u(RESP)
            uout.clear()
            cout.clear()

    if a.profile == "cprofile":
        import cProfile
        import pstats
        pr = cProfile.Profile()
        pr.enable()
        if sync:
            fast(a.n)
        else:
            await slow(a.n)
        pr.disable()
        st = pstats.Stats(pr)
        st.sort_stats("tottime").print_stats(30)
        return 0
    timer = time.process_time if a.clock == "cpu" else time.perf_counter
    best = 1e9
    for _ in range(a.repeat):
        t0 = timer()
        if sync:
            fast(a.n)
        else:
            await slow(a.n)
        dt = (timer() - t0) / a.n * 1e6
        best = min(best, dt)
    from fastgate.build import describe
    print(f"{a.mode}{' +analytics' if a.analytics else ''}{' -metrics' if a.no_metrics else ''}: {best:.2f} us per proxied request (best of {a.repeat} x {a.n}, {a.clock} time), python path only,"
          f" {describe()}")
    return 0


if __name__ == "__main__":
    uvloop.install()
    sys.exit(asyncio.run(main()))
