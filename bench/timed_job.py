"""Runs one beam-cascade job and prints its wall seconds, routing statistics and peak
resident memory (of this process, and of the largest worker process it waited for) as JSON.

The benchmark starts each job in a fresh process, as a user's run would be, and times
`pipeline.run.run` from inside it so the interpreter's own start-up is left out, as it is
for the peer.
"""
from __future__ import annotations

import json
import logging
import sys
import time

from pipeline.job import run

from bench.lib.memory import peak_rss_mib


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    start = time.perf_counter()
    stats = run(sys.argv[1:])
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "stats": stats.to_json(),
                      "peak_rss_mib": peak_rss_mib()}))


if __name__ == "__main__":
    main()
