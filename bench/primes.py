"""Prime sieve kernel benchmark: numpy and libprimesieve against `primesieve -t1`.

    ./run bench primes [--lo 1e9] [--hi 2e9] [--repeat 3]

Counts and materialises (all primes as uint64 in memory) the primes in [lo, hi) with each
backend, median of --repeat runs, and prints each as a ratio to the `primesieve` command
counting the same range on one thread (Debian package `primesieve`; ANCHORS.md: numpy
prototype 6.9x count / 8.4x materialise, libprimesieve via ctypes 1.0x / 1.3x).
Targets (issue 4): numpy <= 8x, native <= 1.5x.

The end-to-end half of the issue's benchmark (a job [1, 1e9] over 2 agents through the
broker, parallel efficiency, stored bytes per prime, primes/s against the original
per-prime TCP path) needs the coordinator and joins this file with it.
"""

import argparse
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable

from node_agent.sieve_backends import NumpyBackend, PrimesieveBackend, SieveBackend
from piswarm.protocol.primes import encode_primes

TARGET = {"numpy": 8.0, "primesieve": 1.5}


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def reference_seconds(lo: int, hi: int, repeat: int) -> float | None:
    """`primesieve lo hi-1 -t1 --time -c`: the time it reports for itself (no start-up)."""
    exe = shutil.which("primesieve")
    if exe is None:
        return None
    runs = []
    for _ in range(repeat):
        out = subprocess.run([exe, str(lo), str(hi - 1), "-t1", "--time", "-c"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        runs.append(float(re.search(r"Seconds: ([\d.]+)", out).group(1)))  # type: ignore[union-attr]
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lo", type=float, default=1e9)
    parser.add_argument("--hi", type=float, default=2e9)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    lo, hi = int(args.lo), int(args.hi)

    reference = reference_seconds(lo, hi, args.repeat)
    backends: list[SieveBackend] = [NumpyBackend()]
    native = PrimesieveBackend.load()
    if native is not None:
        backends.append(native)
    print(f"prime sieve kernels on [{lo:.3g}, {hi:.3g}), one core, median of {args.repeat}")
    if reference is None:
        print("  primesieve command not found (apt-get install primesieve): no ratios")
    else:
        print(f"  primesieve -t1 count     {reference:7.3f} s   1.00x (the reference)")
    ok = True
    for backend in backends:
        backend.count(0, 10**6)  # base primes, library load: not what is measured
        count_s = median_time(lambda b=backend: b.count(lo, hi), args.repeat)
        mat_s = median_time(lambda b=backend: b.primes(lo, hi), args.repeat)
        for what, seconds in (("count", count_s), ("materialise", mat_s)):
            ratio = seconds / reference if reference else float("nan")
            target = TARGET[backend.name]
            verdict = "ok" if ratio <= target else "OVER TARGET"
            ok = ok and ratio <= target
            print(f"  {backend.name:<10} {what:<13} {seconds:7.3f} s  {ratio:5.2f}x  "
                  f"(target <= {target:g}x: {verdict})")  # fmt: skip
    sample = backends[-1].primes(lo, min(hi, lo + 10**7))
    for codec in ("zstd", "zlib"):
        started = time.perf_counter()
        size = len(encode_primes(sample, codec=codec))
        spent = time.perf_counter() - started
        print(f"  encode {codec:<5} {size / len(sample):5.3f} bytes/prime, {spent * 1000:6.1f} ms "
              f"for {len(sample)} primes (ANCHORS: zstd 0.59 B, 0.7 ms)")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
