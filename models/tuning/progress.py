"""What calibrate is doing now: one line per step on stderr, above tqdm's progress bars."""
from __future__ import annotations

import sys

from tqdm import tqdm


def step(message: str) -> None:
    """Says what calibrate is doing now, on stderr (progress bars show within a step)."""
    tqdm.write(f"calibrate: {message}", file=sys.stderr)
