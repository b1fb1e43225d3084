"""Runs one beam-cascade job and prints its wall seconds and routing statistics as JSON.

The benchmark starts each job in a fresh process, as a user's run would be, and times
`pipeline.run.run` from inside it so the interpreter's own start-up is left out, as it is
for the peer.
"""
from __future__ import annotations

import json
import logging
import sys
import time

from pipeline.run import run


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    start = time.perf_counter()
    stats = run(sys.argv[1:])
    print(json.dumps({"seconds": time.perf_counter() - start, "stats": stats}))


if __name__ == "__main__":
    main()
