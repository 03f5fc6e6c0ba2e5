"""Keep freed memory in the process: the work loops allocate the same sizes over and over.

glibc hands big blocks (from 128 KiB, a threshold that moves) back to the kernel when
they are freed, so the next allocation of the same size faults every page in again.
The compute loops of a node do exactly that: a Life strip's kernel temporaries (~128 KiB
each, thousands a second) and a sieve worker's segment, list and encoder arrays (~16 MB
of fresh pages per 1e7 block); so does the coordinator, receiving, checking and storing
a result of ~290 KB every few milliseconds. Measured here:

- two Life strips side by side: 5.3 s against 3.7 s for 1000 generations of 2048 x 4096
  each, 12-15% of it system time;
- a sieve worker, 100 blocks of 1e7 from 1: 3.5-4.1 s with 420,000 page faults (1.0-1.2 s
  of system time), 2.2-2.7 s with none;
- the coordinator during a job [1, 1e9] in 1e7 blocks: page faults were 10-15% of its
  CPU time (perf).

A process's heap then stays at its largest working size (~80 MB for a sieve worker on
1e7 blocks).
"""

import contextlib
import ctypes
import ctypes.util
import gc
from collections.abc import Iterator

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20
"""Allocations below this come from the heap, and are reused once freed."""


def keep_heap_memory(limit: int = 256 << 20) -> bool:
    """Ask glibc to keep up to ``limit`` bytes of freed memory for reuse instead of
    giving it back to the kernel. False where there is no glibc (nothing changes)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, limit))


GC_THRESHOLDS = (20_000, 50, 100)
"""The cycle collector's thresholds for a process that receives thousands of messages a
second: CPython's (700, 10, 10) sweep the young objects after every 700 allocations and
the older generations often, each pass over every long-lived object (5,000 nodes' views).
The kiosk at 5,000 nodes at 1 Hz spent 2.7 points of a core (9% of its CPU) there;
with these, none measurable. Young cyclic garbage still goes within 20,000 allocations."""


@contextlib.contextmanager
def fewer_collections(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> Iterator[None]:
    """Run the block with the cycle collector's ``thresholds``; the old ones after."""
    before = gc.get_threshold()
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*before)
