"""Analytics' CPU per request, in two halves: ``Analytics.record`` (on the request path) and
``encode_record`` (in the pusher), with stand-in request objects, against the same module at
another git revision (default HEAD), interleaved, best of 5 (process CPU time).

usage (from the checkout): .venv/bin/python bench/micro_analytics.py [REV]
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import types

sys.path.insert(0, os.getcwd())
from fastgate.observe import analytics as new  # noqa: E402

rev = sys.argv[1] if len(sys.argv) > 1 else "HEAD"
with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
    f.write(subprocess.run(["git", "show", f"{rev}:fastgate/observe/analytics.py"], check=True,
                           capture_output=True, text=True).stdout)
spec_ = importlib.util.spec_from_file_location("analytics_old", f.name)
old = importlib.util.module_from_spec(spec_)
spec_.loader.exec_module(old)
os.unlink(f.name)



class Obs:
    do_not_track = False
    tag_headers: tuple[str, ...] = ()
    track_paths: tuple[tuple[str, str], ...] = ()


class Spec:
    observe = Obs()
    name = api_id = "api"
    org_id = "default"
    listen_path = "/api/"
    raw = {"version_data": {"versions": {"Default": {}}}}


class Req:
    method = "GET"
    host = "localhost"
    path = "/api/x"
    content_length = 0
    session_key = ""
    session = None
    client_ip = "127.0.0.1"
    headers = [(b"user-agent", b"wrk")]

    def header(self, name: bytes) -> bytes:
        return b"wrk"


class Ex:
    api = types.SimpleNamespace(spec=Spec())
    req = Req()
    started, sent_at, head_at, status = 1.0, 1.5, 2.0, 200


class Cfg:
    analytics_config = types.SimpleNamespace(records_buffer_size=10**9, batch_size=500, flush_interval=200,
                                             storage_expiration_time=60, ignored_ips=[])
    storage = types.SimpleNamespace(url="redis://x", timeout=1.0)


ex = Ex()


def run(mod: types.ModuleType, n: int = 200000) -> tuple[float, float]:
    a = mod.Analytics(Cfg())
    t = time.process_time()
    for _ in range(n):
        a.record(ex)
    t1 = time.process_time()
    q = a.queue
    while q:
        mod.encode_record(q.popleft())
    t2 = time.process_time()
    return (t1 - t) / n * 1e6, (t2 - t1) / n * 1e6


res: dict[str, list[tuple[float, float]]] = {rev: [], "checkout": []}
for _ in range(5):
    for name, mod in ((rev, old), ("checkout", new)):
        res[name].append(run(mod))
for name, r in res.items():
    print(name, "record %.2f us  encode %.2f us (best of 5)" % (min(x[0] for x in r), min(x[1] for x in r)))
