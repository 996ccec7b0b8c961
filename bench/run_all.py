"""``make bench``: every benchmark, one after the other, each printing its figures and saving its record
under ``bench/results/``. It is not part of ``make test``.

    python -m bench.run_all [--quick]

``--quick`` shortens the long ones (for checking that they run, not for figures).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from bench.harness import ROOT


def commands(quick: bool) -> list[list[str]]:
    python = sys.executable
    found = [
        [
            python,
            "-m",
            "bench.ratelimit",
            *(["--seconds", "30", "--quantization", "bucket"] if quick else []),
        ],
        [
            python,
            "-m",
            "bench.throughput",
            *(["--runs", "1", "--seconds", "8", "--backlog", "100000"] if quick else []),
        ],
    ]
    if (ROOT / "bench" / "batch_ingest.py").exists():
        found.append([python, "-m", "bench.batch_ingest", *(["--lines", "5000"] if quick else [])])
    found.append([python, "-m", "bench.callgrind_persistence", *(["--jobs", "2", "6"] if quick else [])])
    found.append([python, "-m", "bench.lease_recovery", *(["--runs", "1", "--rounds", "1"] if quick else [])])
    found.append([python, str(ROOT / "bench" / "sim_rps.py"), *(["--runs", "1"] if quick else [])])
    found.append([python, "-m", "bench.overload", *(["--rounds", "1", "--seconds", "2"] if quick else [])])
    found.append([python, "-m", "bench.tail", *(["--rounds", "1", "--seconds", "3"] if quick else [])])
    found.append(
        [python, "-m", "bench.dropin", *(["--requests", "100", "--waiting", "200"] if quick else [])]
    )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs, to check that everything runs")
    args = parser.parse_args(argv)
    failed = []
    for command in commands(args.quick):
        name = " ".join(command[1:])
        print(f"\n######## {name}", flush=True)
        started = time.monotonic()
        code = subprocess.call(command, cwd=ROOT)
        print(f"######## {name}: exit {code} after {time.monotonic() - started:.0f}s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print("failed or missed a goal:", *failed, sep="\n  ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
