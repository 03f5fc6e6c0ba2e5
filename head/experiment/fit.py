"""Speed-up, efficiency, and the serial fraction the timings imply. Pure arithmetic.

For a sweep's wall times ``T(n)`` (the mean of a point's repeats):

- strong scaling: speed-up ``S(n) = n0 T(n0) / T(n)`` against the smallest count ``n0``
  (``T(1) / T(n)`` when the sweep has one node), efficiency ``S(n) / n``; Amdahl's law
  ``T(n) = T1 (s + (1 - s) / n)`` is a straight line in ``1/n``: least squares gives its
  intercept ``a = s T1`` and slope ``b = (1 - s) T1``, so ``s = a / (a + b)``;
- weak scaling (the job grows with ``n``): the scaled speed-up ``S(n) = n T(n0) / T(n)``
  (``n`` times the work in ``T(n)``, against the work a second of ``n0`` nodes, taken as
  ``n0`` times one node's) and Gustafson's ``S(n) = n - s (n - 1)``, fitted by least
  squares through its fixed point ``S(1) = 1``.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    """One node count of a sweep (at one worker count): its mean time and what follows."""

    nodes: int
    workers: int
    wall_s: float  # mean over the repeats
    spread_s: float  # max - min over the repeats
    repeats: int
    speedup: float
    efficiency: float


def points(runs: Iterable[tuple[int, int, float]], *, weak: bool = False) -> dict[int, list[Point]]:
    """``(nodes, workers, wall_s)`` of every finished run -> for each worker count, its
    points by node count (speed-up against the smallest node count of that worker count)."""
    times: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for nodes, workers, wall in runs:
        if wall > 0:
            times[workers][nodes].append(wall)
    out: dict[int, list[Point]] = {}
    for workers, by_nodes in sorted(times.items()):
        n0 = min(by_nodes)
        t0 = sum(by_nodes[n0]) / len(by_nodes[n0])
        row = []
        for n in sorted(by_nodes):
            walls = by_nodes[n]
            t = sum(walls) / len(walls)
            # strong: n0 T(n0) / T(n); weak: the same, times the work's growth n / n0
            speedup = (n0 * t0 / t) * (n / n0 if weak else 1.0)
            row.append(
                Point(
                    nodes=n,
                    workers=workers,
                    wall_s=t,
                    spread_s=max(walls) - min(walls),
                    repeats=len(walls),
                    speedup=speedup,
                    efficiency=speedup / n,
                )
            )
        out[workers] = row
    return out


def amdahl(samples: Sequence[tuple[int, float]]) -> float | None:
    """The serial fraction ``s`` in [0, 1] that best explains ``(nodes, wall_s)`` of a
    strong-scaling sweep (``None`` for fewer than two node counts)."""
    if len({n for n, _t in samples}) < 2:
        return None
    xs = [1.0 / n for n, _t in samples]
    ys = [t for _n, t in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    if intercept <= 0:
        return 0.0  # faster than ideal, or exactly: nothing serial shows
    if slope <= 0:
        return 1.0  # more nodes never helped
    return intercept / (intercept + slope)


def gustafson(samples: Sequence[tuple[int, float]]) -> float | None:
    """The serial fraction ``s`` in [0, 1] of Gustafson's law for ``(nodes, scaled
    speed-up)`` of a weak-scaling sweep (``None`` without a point past one node)."""
    pairs = [(n, s) for n, s in samples if n > 1]
    if not pairs:
        return None
    num = sum((n - s) * (n - 1) for n, s in pairs)
    den = sum((n - 1) ** 2 for n, _s in pairs)
    return min(1.0, max(0.0, num / den))


def serial_fraction(row: Sequence[Point], *, weak: bool) -> float | None:
    """Amdahl's (strong) or Gustafson's (weak) serial fraction of one worker count's
    points, from every repeat's mean."""
    if weak:
        return gustafson([(p.nodes, p.speedup) for p in row])
    return amdahl([(p.nodes, p.wall_s) for p in row])


def amdahl_speedup(s: float, n: float) -> float:
    """What Amdahl's law with serial fraction ``s`` promises ``n`` nodes."""
    return 1.0 / (s + (1.0 - s) / n)


def gustafson_speedup(s: float, n: float) -> float:
    return n - s * (n - 1.0)


def headline(row: Sequence[Point], *, weak: bool) -> str | None:
    """One sentence a visitor reads, for one worker count's points: the most nodes
    against the fewest ("40 Pis: 37.2x faster than one")."""
    if not row:
        return None
    base, top = row[0], row[-1]
    pis = "Pi" if top.nodes == 1 else "Pis"
    if len(row) < 2:
        return f"{top.nodes} {pis}: {top.wall_s:.1f} s"
    if weak:
        return (
            f"{top.nodes} Pis did {top.nodes / base.nodes:g}x the work of {base.nodes} in "
            f"{top.wall_s / base.wall_s:.2f}x the time"
        )
    if base.nodes == 1:
        return f"{top.nodes} {pis}: {top.speedup:.1f}x faster than one"
    return f"{top.nodes} {pis}: {base.wall_s / top.wall_s:.1f}x faster than {base.nodes}"
