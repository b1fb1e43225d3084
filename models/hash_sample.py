"""A uniform sample that every runner draws alike: the records with the smallest stable hash.

`calibrate_on_input` (pipeline/input_calibration.py) chooses a job's thresholds on a sample
of its own input. Reservoir sampling would pick other records for another file order, split
or seed; the `size` smallest hashes of the records' keys are the same set however the input
is ordered or sharded, and still a uniform sample, since a good hash orders keys at random.
The hash is blake2b of the key's JSON, not Python's `hash()`, which is salted per process.
No Beam, no torch.
"""
from __future__ import annotations

import hashlib
import heapq
import itertools
import json
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


def stable_hash(value: Any) -> int:
    """A 64-bit hash of a JSON value, the same in every process and on every machine (1 and
    "1" hash apart, as they are two ids)."""
    digest = hashlib.blake2b(json.dumps(value).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class BottomHashSample(Generic[Item]):
    """The `size` items with the smallest keys offered so far, in memory for `size` items:
    a heap whose root is the largest key kept, so each offer costs O(log size)."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"a sample of {size} items: give at least 1")
        self._size = size
        self._heap: list[tuple[tuple[int, ...], int, Item]] = []  # keys negated: a max-heap
        self._arrival = itertools.count()  # ties of equal keys never compare the items

    def __len__(self) -> int:
        return len(self._heap)

    def offer(self, key: tuple[int, ...], item: Item) -> None:
        """Keeps `item` if its key is among the `size` smallest seen."""
        entry = (tuple(-k for k in key), -next(self._arrival), item)
        if len(self._heap) < self._size:
            heapq.heappush(self._heap, entry)
        elif entry[0] > self._heap[0][0]:
            heapq.heapreplace(self._heap, entry)

    def items(self) -> list[Item]:
        """The items kept, smallest key first."""
        return [item for _, _, item in sorted(self._heap, reverse=True)]
