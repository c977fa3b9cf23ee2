"""Stream 1 GiB up and 1 GiB down through fastgate and report the gateway's peak RSS.

    .venv/bin/python bench/streaming.py [--size-mib 1024]

Starts the test upstream and one gateway (workers = 1) on free loopback ports, then for each of
upload/download x Content-Length/chunked moves the body (generated and hashed on the fly,
sha256 checked end to end) while sampling the gateway's VmRSS from /proc every 20 ms. Prints one
line per transfer and the overall peak. The same check at 256 MiB runs in the test suite
(``tests/integration/test_streaming.py``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kit.procs import Gateway, Upstream  # noqa: E402
from tests.kit.apis import classic_api  # noqa: E402
from tests.kit.stream import RssSampler, download, expected_sha, rss_kib, timed, upload  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    upstream = Upstream()
    with tempfile.TemporaryDirectory() as tmp:
        gw = Gateway(Path(tmp), [classic_api("k", "/k/", upstream.url)])
        try:
            pid = gw.proc.pid
            start_rss = rss_kib(pid)
            print(f"gateway pid {pid}, RSS at start {start_rss / 1024:.1f} MiB, body {args.size_mib} MiB")
            want = expected_sha(size)
            peak = start_rss
            ok = True
            for name, run in (
                ("upload   content-length", lambda: upload(gw.port, "/k/echo", size, chunked=False)),
                ("upload   chunked       ", lambda: upload(gw.port, "/k/echo", size, chunked=True)),
                ("download content-length", lambda: download(gw.port, f"/k/bytes/{size}")),
                ("download chunked       ", lambda: download(gw.port, f"/k/bytes/{size}?chunked=1")),
            ):
                with RssSampler(pid) as rss:
                    result, seconds = timed(run)
                if name.startswith("upload"):
                    status, echoed, sent = result
                    good = status == 200 and echoed["body_length"] == size and echoed["body_sha256"] == sent == want
                else:
                    status, _, length, got = result
                    good = status == 200 and length == size and got == want
                ok = ok and good
                peak = max(peak, rss.peak)
                print(
                    f"{name}  {'ok ' if good else 'BAD'}  {seconds:5.1f} s  {size / seconds / 2**20:6.0f} MiB/s"
                    f"  peak RSS {rss.peak / 1024:6.1f} MiB (+{rss.growth_mib:.1f})"
                )
            print(f"peak gateway RSS over all transfers: {peak / 1024:.1f} MiB (start {start_rss / 1024:.1f} MiB)")
        finally:
            gw.stop()
            upstream.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
