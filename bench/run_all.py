"""``make bench``: every benchmark, one table of figures.

.venv/bin/python -m bench.run_all [--clients 2000] [--latency-ms 50] [--fanout 4000]
    [--import-rows 20000]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time


def _run(module: str, *args: str) -> str:
    """Each benchmark in its own interpreter: they set up the environment differently."""
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    ).stdout
    return output.rstrip() + f"\n  ({module} took {time.perf_counter() - started:.0f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="2000")
    parser.add_argument("--latency-ms", default="50")
    parser.add_argument("--fanout", default="4000")
    parser.add_argument("--import-rows", default="20000")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    sections = [
        (
            "1-2. throughput, AWS requests and cost per message",
            "bench.pipeline",
            ("--clients", args.clients, "--latency-ms", args.latency_ms),
        ),
        ("3. fan-out rate", "bench.fanout", ("--clients", args.fanout)),
        ("4. stats cost growth", "bench.stats_cost", ()),
        ("5. cold start", "bench.cold_start", ()),
        ("6. send rate limit shared by 4 senders (20/s, 60 s)", "bench.rate_limit", ()),
        (
            "7. bulk import: rows per second, AWS requests and cost per 1,000 rows",
            "bench.imports",
            ("--rows", args.import_rows),
        ),
    ]
    for title, module, module_args in sections:
        print(f"\n== {title}")
        print(_run(module, *module_args))


if __name__ == "__main__":
    main()
