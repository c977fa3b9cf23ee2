"""The wire fuzzer, long run: raw request bytes at a running fastgate with a recording upstream.

    .venv/bin/python bench/fuzz.py --inputs 1000000 --concurrency 64 --seed 1 --workers 1

Starts fastgate (memory store, five APIs: keyless, auth token, basic, JWT, HMAC; a valid token and
a valid basic user so that some inputs pass), the recording upstream in this process, and sends
the inputs of `tests/kit/wirefuzz.py`. Exit status 1 on any 5xx, any refused request seen by the
upstream, a crashed gateway or a traceback in its log. The report goes to stdout and, with
`--out`, to a Markdown file (bench/results/). `make test` runs a short run of the same thing
(tests/integration/test_wire_fuzz.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kit.gateway_api import create_key  # noqa: E402
from tests.kit.procs import Gateway, free_port  # noqa: E402
from tests.kit.wirefuzz import (  # noqa: E402
    FUZZ_POLICIES, FUZZ_SETTINGS, Credentials, Recorder, Report, fuzz_apis, run,
)


async def fuzz(args: argparse.Namespace, directory: Path) -> tuple[Report, Gateway]:
    loop = asyncio.get_running_loop()
    up_port = free_port()
    server = await loop.create_server(Recorder, "127.0.0.1", up_port, backlog=1024)
    gw = Gateway(directory, fuzz_apis(f"http://127.0.0.1:{up_port}"),
                 {**FUZZ_SETTINGS, "workers": args.workers,
                  "storage": {"url": args.storage}}, policies=FUZZ_POLICIES, wait=False)
    await loop.run_in_executor(None, gw.ready)
    token = (await loop.run_in_executor(None, create_key, gw, {"access_rights": _rights()}))["key"]
    await loop.run_in_executor(None, lambda: create_key(
        gw, {"basic_auth_data": {"password": "fuzz-pass"}, "access_rights": _rights()}, "fuzzuser"))
    creds = Credentials(token=token, basic=base64.b64encode(b"fuzzuser:fuzz-pass").decode())
    try:
        report = await run(gw.port, args.inputs, seed=args.seed, creds=creds, concurrency=args.concurrency,
                           timeout=args.timeout, progress=30)
    except BaseException:
        gw.stop()
        raise
    finally:
        server.close()
    return report, gw


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _rights() -> dict[str, object]:
    return {a: {"api_id": a, "api_name": a, "versions": ["Default"]} for a in ("open", "tok", "basic", "hmac")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for an answer")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--storage", default="memory://")
    parser.add_argument("--out", help="also write the report to this Markdown file")
    args = parser.parse_args()
    if args.workers > 1 and args.storage.startswith("memory"):
        parser.error("--workers > 1 needs --storage redis://...")
    # SIGTERM unwinds like Ctrl-C, so the gateway this started is stopped, not orphaned.
    signal.signal(signal.SIGTERM, _interrupted)
    with tempfile.TemporaryDirectory(prefix="fastgate-fuzz-") as tmp:
        report, gw = asyncio.run(fuzz(args, Path(tmp)))
        alive = gw.proc is not None and gw.proc.poll() is None
        log = gw.log
        gw.stop()
    problems = report.problems()
    if not alive:
        problems.append("the gateway process died")
    if "Traceback" in log:
        problems.append("the gateway logged a traceback:\n" + log[log.index("Traceback"):][:3000])
    lines = [
        f"# Wire fuzz: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
        "",
        f"Command: `.venv/bin/python bench/fuzz.py --inputs {args.inputs} --concurrency {args.concurrency} "
        f"--seed {args.seed} --workers {args.workers} --storage {args.storage}`",
        f"Machine: {os.cpu_count()} cores, shared with other engineers' runs (times are indicative).",
        "",
        f"- inputs (connections): {report.inputs}, requests in them: {report.requests}",
        f"- time: {report.seconds:.0f} s ({report.inputs / max(report.seconds, 1e-9):.0f} inputs/s)",
        f"- answers by status: {dict(sorted(report.statuses.items()))}",
        f"- requests without an answer (incomplete, timed out or closed): {report.no_answer}",
        f"- requests the upstream received: {report.forwarded}",
        f"- 505 for an HTTP/2 or HTTP/3 request line (allowed, see tests/kit/wirefuzz.py): {report.version_505}",
        f"- other 5xx: {len(report.five_xx)}; refused requests the upstream received whole: {len(report.leaked)}; "
        f"gateway alive at the end: {alive}",
        "",
        "Result: " + ("PASS" if not problems else "FAIL\n\n" + "\n".join(f"- {p}" for p in problems)),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
