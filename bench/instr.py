"""Instructions per proxied request on the gateway's Python path, counted by callgrind.

usage (from the project checkout):
    .venv/bin/python bench/instr.py [MODE ...] [--n N] [--top K] [--keep]

Runs ``bench/loopbench.py MODE`` under ``valgrind --tool=callgrind`` collecting only inside the
two ``data_received`` callbacks (client side and upstream side), so the count is exactly the work
of the requests: the loop's setup, imports and warm-up outside them are left out. Two runs (N and
2N requests) are subtracted, so what the warm-up requests cost cancels too. Instruction counts
are deterministic for a given build and input: unlike wall time they do not move when another
process shares the machine, which makes this the before/after figure for a hot-path change
(``bench/run.py`` stays the figure that counts, beside nginx).

``--top K`` prints the K functions with the most instructions of their own (per request) from the
larger run; ``--keep`` leaves the callgrind files in ``bench/tmp/instr/``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
TOGGLE = "CPyPy_*data_received"  # the compiled build's entry points


def run(mode: str, n: int, out: pathlib.Path, toggle: str) -> int:
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", f"--toggle-collect={toggle}",
           str(ROOT / ".venv/bin/python"), str(HERE / "loopbench.py"), mode, "--n", str(n), "--repeat", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"callgrind run failed ({mode}, n={n}):\n{proc.stderr[-2000:]}")
    found = re.search(r"refs:\s+([\d,]+)", proc.stderr)
    if not found:
        sys.exit(f"no instruction count in valgrind's output:\n{proc.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def top(path: pathlib.Path, n: int, k: int) -> list[str]:
    text = subprocess.run(["callgrind_annotate", str(path)], capture_output=True, text=True).stdout
    rows = []
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$", line)
        if m and "PROGRAM TOTALS" not in line:
            name = re.sub(r"\s*\[.*\]$", "", m.group(2)).split(":", 1)[-1]
            rows.append(f"{int(m.group(1).replace(',', '')) / n:10.0f}  {name}")
        if len(rows) >= k:
            break
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modes", nargs="*", default=["keyless", "token"])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--top", type=int, default=0)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install -y valgrind)")
    sys.path.insert(0, str(ROOT))
    from fastgate.build import describe

    build = describe()
    if build == "pure Python":
        sys.exit("bench/instr.py counts the compiled build (make install): the pure build has no "
                 "C entry point to collect from")
    tmp = ROOT / "bench/tmp/instr"
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"# instructions per request, callgrind, {build}, n={a.n} vs {2 * a.n}")
    for mode in a.modes:
        small, large = tmp / f"{mode}-1.cg", tmp / f"{mode}-2.cg"
        one = run(mode, a.n, small, TOGGLE)
        two = run(mode, 2 * a.n, large, TOGGLE)
        print(f"{mode:22} {(two - one) / a.n:10.0f} instructions per request")
        if a.top:
            for row in top(large, 2 * a.n, a.top):
                print("   ", row)
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
