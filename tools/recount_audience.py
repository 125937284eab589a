"""Rebuild the audience counters of the preview from the clients table (a scan).

    python -m tools.recount_audience                 # the local stack (make run)
    python -m tools.recount_audience --stage dev     # AWS, your usual credentials

A one-off: every client write keeps the counters exact (``chalicelib/domain/audience.py``),
but the clients created before the counters existed are in none of them. Run it once
after deploying the preview to a stage that already has clients, while no client is
written (a write during the scan may be counted wrongly); running it again is harmless.
It reads the whole clients table (about one read unit per 4 KB of clients) and writes
each counter once. ``make run`` runs it by itself the first time it finds clients that
were never counted.
"""

from __future__ import annotations

import argparse
import sys
import time

from chalicelib.bootstrap import bootstrap
from local.keys import settings_for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="local", choices=["local", "dev", "prod"])
    args = parser.parse_args(argv)
    services = bootstrap(settings_for(args.stage))
    services.bind_storage()
    from chalicelib.storage.audience import recount  # noqa: PLC0415 - after binding

    started = time.monotonic()
    counts = recount(now_ms=int(time.time() * 1000))
    everyone = sum(n for key, n in counts.items() if key.code is None and key.tag is None)
    print(
        f"audience counters rebuilt: {everyone} clients, {len(counts)} counters,"
        f" {time.monotonic() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
