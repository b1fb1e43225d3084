"""A job process's peak resident memory, measured one way for this project's jobs
(bench/timed_job.py) and the stock-handler peer's (bench/peer.py); imports nothing of the
project, so that the peer's environment can use it."""
from __future__ import annotations

import resource


def peak_rss_mib() -> dict[str, float]:
    """Peak resident MiB of this process and of the largest child process it waited for
    (getrusage gives no sum over children)."""
    return {who: resource.getrusage(scope).ru_maxrss / 1024  # Linux reports KiB
            for who, scope in (("job", resource.RUSAGE_SELF),
                               ("largest_worker", resource.RUSAGE_CHILDREN))}
