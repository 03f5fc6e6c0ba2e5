"""Freed memory stays in the process: measured by the page faults of real processes."""

import subprocess
import sys

import psutil

from node_agent.runner import Workers
from tests.conftest import cmdline, minor_faults

# Sieves 1e7 blocks as a worker does and prints the page faults they cost, after a first
# block to warm up (imports, base primes, the sieve's own arrays).
BLOCKS = """
import resource, sys
from piswarm.heap import keep_heap_memory
from node_agent.runner import compute_block
if sys.argv[1] == "keep":
    assert keep_heap_memory()
compute_block(10**9, 10**9 + 10**7, "numpy")
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for lo in range(10**9 + 10**7, 10**9 + 6 * 10**7, 10**7):
    compute_block(lo, lo + 10**7, "numpy")
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", BLOCKS, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return int(out)


def test_a_sieve_loop_reuses_its_freed_arrays_instead_of_faulting_them_in_again():
    # glibc's defaults give most of each block's arrays back to the kernel: ~4,000 page
    # faults a block (16 MB) here.
    assert page_faults("default") > 5 * 1_000
    assert page_faults("keep") < 500


def test_a_process_without_glibc_mallopt_is_left_as_it_is(monkeypatch):
    from piswarm import heap

    monkeypatch.setattr(heap.ctypes.util, "find_library", lambda _name: None)
    assert heap.keep_heap_memory() is False


def test_sieve_workers_keep_their_memory():
    others = {p.pid for p in psutil.Process().children()}
    pool = Workers(1)
    try:
        pool.submit(10**9, 10**9 + 10**7, "numpy").result(timeout=60)
        (worker,) = [
            p
            for p in psutil.Process().children()
            if p.pid not in others and "spawn_main" in " ".join(cmdline(p))
        ]
        before = minor_faults(worker.pid)
        for lo in range(10**9 + 10**7, 10**9 + 6 * 10**7, 10**7):
            pool.submit(lo, lo + 10**7, "numpy").result(timeout=60)
        assert minor_faults(worker.pid) - before < 500
    finally:
        pool.shutdown()
