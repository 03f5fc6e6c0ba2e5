"""Prime search benchmark: sieve kernels against `primesieve -t1`, then a whole job.

    ./run bench primes [--lo 1e9] [--hi 2e9] [--repeat 3] [--end 1e9] [--backend numpy]

Counts and materialises (all primes as uint64 in memory) the primes in [lo, hi) with each
backend, median of --repeat runs, and prints each as a ratio to the `primesieve` command
counting the same range on one thread (Debian package `primesieve`; ANCHORS.md: numpy
prototype 6.9x count / 8.4x materialise, libprimesieve via ctypes 1.0x / 1.3x).
Targets (issue 4): numpy <= 8x, native <= 1.5x.

End to end: a job [1, --end] through a real broker, coordinator and 2 agent processes
(one sieve worker each, --backend), all primes stored in SQLite; its wall time against
the same blocks sieved and encoded one after another in this process (parallel
efficiency; target >= 80% on this 2-core machine), the bytes stored per prime (target
<= 0.7) and the primes delivered per second against the original system's one TCP
connection per prime (~1,080/s, measured on this machine).
"""

import argparse
import contextlib
import math
import multiprocessing
import re
import shutil
import sqlite3
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import psutil

from bench.cluster import bench_cluster
from head.jobclient import JobClient
from node_agent.runner import compute_block
from piswarm.heap import keep_heap_memory
from piswarm.protocol.jobs import Keep, PrimesRequest
from piswarm.protocol.primes import encode_primes
from piswarm.sieve_backends import NumpyBackend, PrimesieveBackend, SieveBackend

ORIGINAL_PRIMES_PER_S = 1_080  # the seed system: one TCP connection per prime
BLOCK = 10**7

TARGET = {"numpy": 8.0, "primesieve": 1.5}


def timed(fn: Callable[[int, int], object], lo: int, hi: int) -> float:
    started = time.perf_counter()
    fn(lo, hi)
    return time.perf_counter() - started


def by_blocks(primes: Callable[[int, int], object], lo: int, hi: int) -> None:
    """Every 1e7 block's primes as an array, one after another (each dropped at once)."""
    for start in range(lo, hi, BLOCK):
        primes(start, min(hi, start + BLOCK))


def reference_seconds(lo: int, hi: int, repeat: int) -> float | None:
    """`primesieve lo hi-1 -t1 --time -c`: the time it reports for itself (no start-up)."""
    exe = shutil.which("primesieve")
    if exe is None:
        return None
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [exe, str(lo), str(hi - 1), "-t1", "--time", "-c"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        runs.append(float(re.search(r"Seconds: ([\d.]+)", out).group(1)))  # type: ignore[union-attr]
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lo", type=float, default=1e9)
    parser.add_argument("--hi", type=float, default=2e9)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--end", type=float, default=1e9, help="end-to-end job: [1, END]")
    parser.add_argument("--only", choices=["kernels", "e2e"], help="run one half")
    parser.add_argument("--block-size", type=float, default=BLOCK, help="end-to-end blocks")
    parser.add_argument("--e2e-repeat", type=int, default=3, help="end-to-end runs (medians)")
    parser.add_argument(
        "--backend",
        choices=["numpy", "primesieve"],
        default="numpy",
        help="the agents' sieve in the end-to-end run",
    )
    parser.add_argument("--agents", type=int, default=2, help="end-to-end agents (one worker each)")
    parser.add_argument(
        "--keep",
        choices=["primes", "counts"],
        default="primes",
        help="what the end-to-end job stores of each block",
    )
    args = parser.parse_args()
    lo, hi = int(args.lo), int(args.hi)
    keep_heap_memory()  # as the agents' sieve workers do: the single-process runs compare

    def e2e() -> bool:
        size, end = int(args.block_size), int(args.end)
        return end_to_end(end, args.backend, size, args.e2e_repeat, args.agents, args.keep)

    if args.only == "e2e":
        return 0 if e2e() else 1
    backends: list[SieveBackend] = [NumpyBackend()]
    native = PrimesieveBackend.load()
    if native is not None:
        backends.append(native)
    for backend in backends:
        # Base primes, the library's load and the first touch of the memory a list takes
        # (on this VM the host maps fresh pages slowly: 0.58 s for 400 MB, later 0.08 s).
        backend.count(0, 10**6)
        backend.primes(lo, hi)
    # Every repeat measures each in turn: this shared machine's speed drifts by a third
    # within minutes, and a slow spell should hit all of them, not one.
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        runs.setdefault("reference", []).append(reference_seconds(lo, hi, 1) or math.nan)
        for backend in backends:
            for what, fn in (
                ("count", backend.count),
                ("materialise", backend.primes),
                ("blocks", lambda a, b, f=backend.primes: by_blocks(f, a, b)),
            ):
                runs.setdefault(f"{backend.name} {what}", []).append(timed(fn, lo, hi))
    times = {name: statistics.median(values) for name, values in runs.items()}
    reference = times["reference"]
    print(f"prime sieve kernels on [{lo:.3g}, {hi:.3g}), one core, median of {args.repeat}")
    if math.isnan(reference):
        print("  primesieve command not found (apt-get install primesieve): no ratios")
    else:
        print(f"  primesieve -t1 count     {reference:7.3f} s   1.00x (the reference)")
    ok = True
    for backend in backends:
        for what in ("count", "materialise", "blocks"):
            seconds = times[f"{backend.name} {what}"]
            ratio = seconds / reference
            target = TARGET[backend.name]
            verdict = "ok" if ratio <= target else "OVER TARGET"
            if what == "blocks":  # what a worker does: no target of its own
                print(
                    f"  {backend.name:<10} {'in 1e7 blocks':<13} {seconds:7.3f} s  "
                    f"{ratio:5.2f}x  (listed a block at a time, as workers do)"
                )
                continue
            ok = ok and ratio <= target
            print(
                f"  {backend.name:<10} {what:<13} {seconds:7.3f} s  {ratio:5.2f}x  "
                f"(target <= {target:g}x: {verdict})"
            )
    sample = backends[-1].primes(lo, min(hi, lo + 10**7))
    for codec in ("zstd", "zlib"):
        size = len(encode_primes(sample, codec=codec))  # warm: first calls fault pages in
        spent = statistics.median(
            timed(lambda a, b, c=codec: encode_primes(sample, codec=c), 0, 0) for _ in range(21)
        )
        print(
            f"  encode {codec:<5} {size / len(sample):5.3f} bytes/prime, {spent * 1000:6.1f} ms "
            f"for {len(sample)} primes, median of 21 (ANCHORS: zstd 0.59 B, 0.7 ms)"
        )
    if args.only != "kernels":
        ok = e2e() and ok
    return 0 if ok else 1


def _cpu(proc: psutil.Process) -> float:
    """CPU seconds of a process and its children (an agent's sieve workers)."""
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return total


def _run_job(
    client: JobClient, start: int, end: int, block: int, rid: str, keep: Keep = "primes"
) -> tuple[str, float]:
    """Submit and wait for the end: (job id, wall seconds)."""
    started = time.perf_counter()
    request = PrimesRequest(start=start, end=end, block_size=block, request_id=rid, keep=keep)
    reply = client.submit(request, timeout=30)
    if reply.job is None:
        raise SystemExit(f"job refused: {reply.error}")
    final = client.follow(reply.job, lambda _s: None, idle_timeout=120)
    if final.state != "done":
        raise SystemExit(f"job {reply.job} ended {final.state}")
    return reply.job, time.perf_counter() - started


def sieve_blocks(blocks: list[tuple[int, int]], backend: str, keep: Keep = "primes") -> float:
    """Sieve and encode ``blocks`` one after another; the seconds it took."""
    started = time.perf_counter()
    for lo, hi in blocks:
        compute_block(lo, hi, backend, keep)
    return time.perf_counter() - started


def in_processes(
    pool: ProcessPoolExecutor,
    n: int,
    blocks: list[tuple[int, int]],
    backend: str,
    keep: Keep = "primes",
) -> float:
    """The blocks shared out to ``n`` processes of the pool (every n-th block each), no
    broker: the wall time of the slowest share, what the machine allows just now."""
    shares = [pool.submit(sieve_blocks, blocks[i::n], backend, keep) for i in range(n)]
    return max(share.result() for share in shares)


def end_to_end(
    end: int, backend: str, block: int, repeat: int, agents: int = 2, keep: Keep = "primes"
) -> bool:
    blocks = [(lo, min(lo + block, end + 1)) for lo in range(1, end + 1, block)]
    compute_block(1, 1000, backend)  # imports and base primes: not what is measured
    print(
        f"\nend to end: job [1, {end:.3g}], {len(blocks)} blocks of {block:.0e}, "
        f"{backend} sieve, {agents} agents with one worker each, keeping {keep}, "
        f"median of {repeat}"
    )
    singles, walls, spent_runs, ceilings = [], [], [], []
    spawn = multiprocessing.get_context("spawn")
    with (
        bench_cluster(agents, ["--backend", backend]) as cluster,
        # Its processes keep their memory, as the agents' workers do.
        ProcessPoolExecutor(agents, mp_context=spawn, initializer=keep_heap_memory) as pool,
    ):
        in_processes(pool, agents, blocks[: 2 * agents], backend)  # imports, base primes
        with JobClient(cluster.admin, connect_timeout=30) as client:
            _run_job(client, 1, agents * 2 * block, block, "warm-up")  # workers start
            watched = [psutil.Process(p.pid) for p in cluster.procs]
            watched.append(psutil.Process(cluster.broker.pid))
            # Alternated: this machine's speed drifts by a third within minutes.
            for run in range(repeat):
                singles.append(sieve_blocks(blocks, backend, keep))
                ceilings.append(in_processes(pool, agents, blocks, backend, keep))
                before = [_cpu(p) for p in watched]
                job, wall = _run_job(client, 1, end, block, f"measured-{run}", keep)
                walls.append(wall)
                spent_runs.append([_cpu(p) - b for p, b in zip(watched, before, strict=True)])
        stored, primes = (
            sqlite3.connect(cluster.db)
            .execute("SELECT SUM(LENGTH(data)), SUM(count) FROM results WHERE job = ?", (job,))
            .fetchone()
        )
        nodes = cluster.nodes
    single, wall = statistics.median(singles), statistics.median(walls)
    ceiling = statistics.median(s / (agents * c) for s, c in zip(singles, ceilings, strict=True))
    spent = [statistics.median(column) for column in zip(*spent_runs, strict=True)]
    print(f"  one process, block after block (sieve + encode)  {single:7.2f} s")
    names = ["coordinator"] + [f"{n} (+worker)" for n in nodes] + ["mosquitto"]
    print(
        "  CPU seconds during the job: "
        + ", ".join(f"{name} {cpu:.2f}" for name, cpu in zip(names, spent, strict=True))
    )
    efficiency = single / (agents * wall)
    per_prime = stored / primes
    delivered = primes / wall
    print(f"  {agents} agents through the broker, all stored         {wall:7.2f} s")
    print(
        f"  parallel efficiency {efficiency:6.1%}  (target >= 80%: "
        f"{'ok' if efficiency >= 0.8 else 'UNDER TARGET'})"
    )
    print(
        f"    the same blocks in {agents} plain processes, no broker: {ceiling:6.1%} "
        f"(what this machine allowed just then): {efficiency / ceiling:.0%} of that "
        "ceiling"
    )
    if keep == "counts":
        print(f"  stored {stored:,} bytes for {primes:,} primes (counts only)")
        return efficiency >= 0.8
    print(
        f"  stored {per_prime:5.3f} bytes/prime ({stored / 1e6:.1f} MB for {primes:,})  "
        f"(target <= 0.7: {'ok' if per_prime <= 0.7 else 'OVER TARGET'})"
    )
    print(
        f"  delivered {delivered:,.0f} primes/s = {delivered / ORIGINAL_PRIMES_PER_S:,.0f}x "
        f"the original per-prime TCP path ({ORIGINAL_PRIMES_PER_S:,}/s)"
    )
    return efficiency >= 0.8 and per_prime <= 0.7


if __name__ == "__main__":
    raise SystemExit(main())
