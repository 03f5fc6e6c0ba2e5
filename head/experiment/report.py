"""An experiment's report: ``report.png`` (speed-up, efficiency, where the time went) and
``report.txt`` (the numbers, the fitted serial fraction, one sentence), from its runs.

Drawn with pygame on a surface that never reaches a screen (the head has pygame; no
plotting library is needed for three panels of lines and bars). :func:`summary` is plain
text, :func:`render` a surface, :func:`write` both files.
"""

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from head.experiment import fit

if TYPE_CHECKING:
    import pygame
from head.experiment.plan import Plan
from piswarm.flags import readable
from piswarm.protocol.experiments import ExperimentRun

SIZE = (1500, 520)
BACKGROUND = (250, 250, 248)
INK = (30, 30, 30)
GRID = (215, 215, 210)
IDEAL = (150, 150, 150)
MODEL = (200, 120, 40)
BUSY = (60, 150, 90)
IDLE = (215, 200, 170)
SERIES = [(40, 90, 180), (200, 60, 60), (60, 150, 90), (140, 80, 170), (220, 150, 30)]
"""A colour per worker count."""


@dataclass(frozen=True)
class Costs:
    """Where one point's time went, over its repeats (fractions of what it had)."""

    busy: float | None  # of the worker-seconds the run's nodes had (wall x nodes x workers)
    head_cpu: float | None  # of the wall time
    broker_cpu: float | None
    messages: float | None  # a second


def costs(runs: Sequence[ExperimentRun]) -> Costs:
    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return Costs(
        busy=mean(
            [r.busy_s / (r.wall_s * r.nodes * r.workers) for r in runs if r.busy_s and r.wall_s]
        ),
        head_cpu=mean(
            [r.head_cpu_s / r.wall_s for r in runs if r.head_cpu_s is not None and r.wall_s]
        ),
        broker_cpu=mean(
            [r.broker_cpu_s / r.wall_s for r in runs if r.broker_cpu_s is not None and r.wall_s]
        ),
        messages=mean([r.messages / r.wall_s for r in runs if r.messages is not None and r.wall_s]),
    )


def _by_point(runs: Sequence[ExperimentRun]) -> dict[tuple[int, int], list[ExperimentRun]]:
    """The runs of each point of the sweep: (workers, nodes) -> its repeats."""
    by_point: dict[tuple[int, int], list[ExperimentRun]] = {}
    for r in runs:
        by_point.setdefault((r.workers, r.nodes), []).append(r)
    return by_point


def _rows(plan: Plan, runs: Sequence[ExperimentRun]) -> dict[int, list[fit.Point]]:
    return fit.points(((r.nodes, r.workers, r.wall_s) for r in runs), weak=plan.scaling == "weak")


def sentence(plan: Plan, runs: Sequence[ExperimentRun]) -> str | None:
    """The headline: the most workers' points (strong), or the fewest's (weak)."""
    rows = _rows(plan, runs)
    if not rows:
        return None
    weak = plan.scaling == "weak"
    return fit.headline(rows[min(rows) if weak else max(rows)], weak=weak)


def summary(plan: Plan, runs: Sequence[ExperimentRun]) -> str:
    """The report's text: the plan, each point's numbers, the fits, the overhead."""
    weak = plan.scaling == "weak"
    lines = [
        f"Experiment {plan.name}: {plan.kind}, {plan.scaling} scaling, nodes "
        f"{' '.join(map(str, plan.nodes))}, workers per node "
        f"{' '.join(map(str, plan.workers))}, {plan.repeats} repeat(s)",
        "  job: " + _job_words(plan),
        f"  runs: {len(runs)} of {plan.total} done",
        "",
    ]
    by_point = _by_point(runs)
    for workers, row in _rows(plan, runs).items():
        lines.append(f"{workers} worker(s) per node:")
        lines.append(
            "  nodes   wall s  +- s  speed-up  efficiency  busy   head CPU  broker CPU  msgs/s"
        )
        for p in row:
            c = costs(by_point[(workers, p.nodes)])
            lines.append(
                f"  {p.nodes:>5} {p.wall_s:>8.2f} {p.spread_s / 2:>5.2f} {p.speedup:>9.2f}"
                f" {p.efficiency:>10.0%}  {_pct(c.busy):>5}  {_pct(c.head_cpu):>8}"
                f"  {_pct(c.broker_cpu):>10}  {_num(c.messages):>6}"
            )
        serial = fit.serial_fraction(row, weak=weak)
        if serial is not None:
            law = "Gustafson" if weak else "Amdahl"
            limit = (
                f": at most {1 / serial:.0f}x faster however many nodes"
                if not weak and serial > 0
                else ""
            )
            lines.append(f"  {law}'s serial fraction: {serial:.3f}{limit}")
        lines.append("")
    headline = sentence(plan, runs)
    if headline:
        lines.append(f"In a sentence: {headline}.")
    answers: dict[int, set[str]] = {}
    for r in runs:
        answers.setdefault(r.work, set()).add(r.result)
    for work, found in sorted(answers.items()):
        if len(found) > 1:  # the same job, different answers: a node computed wrong
            lines.append(
                f"WARNING: runs of the same job ({readable(work)}) gave different answers: "
                f"{', '.join(sorted(found))} (see each run's job status)"
            )
    total = sum(r.wall_s + r.gap_s for r in runs)
    gaps = sum(r.gap_s for r in runs)
    if total > 0:
        lines.append(
            f"The experiment's own time between runs: {gaps:.1f} s of {total:.1f} s "
            f"({gaps / total:.1%})."
        )
    hot = max((r.temp_max_c for r in runs if r.temp_max_c is not None), default=None)
    throttled = sum(r.throttled for r in runs)
    if hot is not None:
        lines.append(f"Hottest node: {hot:.1f} C; node-runs throttled: {throttled}.")
    versions = sorted({v for r in runs for v in r.versions})
    backends = sorted({b for r in runs for b in r.backends})
    if versions or backends:
        lines.append(
            f"Versions: {', '.join(versions) or '-'}; backends: {', '.join(backends) or '-'}."
        )
    return "\n".join(lines) + "\n"


def _job_words(plan: Plan) -> str:
    weak = plan.scaling == "weak"
    if plan.kind == "primes":
        blocks = readable(plan.block_size) if plan.block_size else "the coordinator's size"
        return (
            f"primes in [{readable(plan.start)}, {readable(plan.end)}]"
            f"{' (n times as many numbers on n nodes)' if weak else ''}, keeping {plan.keep}, "
            f"blocks of {blocks}"
        )
    taller = " (n times as tall on n nodes)" if weak else ""
    return f"Life {plan.width}x{plan.height}{taller}, {plan.gens} generations"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


# -- the picture ---------------------------------------------------------------------------


class _Panel:
    """One plot: a white rectangle with axes, nodes along x."""

    def __init__(
        self, surface: "pygame.Surface", font: "pygame.font.Font", rect: "pygame.Rect"
    ) -> None:
        self.surface, self.font, self.rect = surface, font, rect

    def text(self, words: str, at: tuple[int, int], colour: tuple[int, int, int] = INK) -> None:
        self.surface.blit(self.font.render(words, True, colour), at)

    def frame(self, name: str) -> None:
        import pygame

        pygame.draw.rect(self.surface, (255, 255, 255), self.rect)
        pygame.draw.rect(self.surface, INK, self.rect, 1)
        self.text(name, (self.rect.x, self.rect.y - 24))

    def axes(self, name: str, max_x: int, max_y: float) -> None:
        import pygame

        self.frame(name)
        r = self.rect
        for k in range(5):
            y = r.bottom - r.height * k // 4
            pygame.draw.line(self.surface, GRID, (r.x + 1, y), (r.right - 2, y))
            self.text(f"{max_y * k / 4:.3g}", (r.x - 36, y - 8))
        self.text("nodes", (r.right - 44, r.bottom + 20))
        for n in sorted({1, max(1, max_x // 2), max_x}):
            self.text(str(n), (self.at(n, 0, max_x, max_y)[0] - 4, r.bottom + 4))

    def at(self, x: float, y: float, max_x: float, max_y: float) -> tuple[int, int]:
        r = self.rect
        fx = (x - 1) / (max_x - 1) if max_x > 1 else 0.5
        fy = min(1.0, max(0.0, y / max_y)) if max_y > 0 else 0.0
        return r.x + int(fx * (r.width - 1)), r.bottom - 1 - int(fy * (r.height - 1))

    def line(
        self,
        pts: list[tuple[float, float]],
        max_x: float,
        max_y: float,
        colour: tuple[int, int, int],
        width: int,
        *,
        dots: bool = False,
    ) -> None:
        import pygame

        xy = [self.at(x, y, max_x, max_y) for x, y in pts if math.isfinite(y)]
        if len(xy) >= 2:
            pygame.draw.lines(self.surface, colour, False, xy, width)
        if dots:
            for p in xy:
                pygame.draw.circle(self.surface, colour, p, 5)


def render(plan: Plan, runs: Sequence[ExperimentRun]) -> "pygame.Surface":
    """The three panels on one surface (pygame is imported here: only the head draws)."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import pygame

    pygame.font.init()
    surface = pygame.Surface(SIZE)
    surface.fill(BACKGROUND)
    font = pygame.font.Font(None, 22)
    weak = plan.scaling == "weak"
    rows = _rows(plan, runs)
    headline = sentence(plan, runs) or f"{plan.name}: no run has finished yet"
    surface.blit(pygame.font.Font(None, 34).render(headline, True, INK), (20, 14))
    width = (SIZE[0] - 80) // 3
    speed, eff, time_ = (
        _Panel(surface, font, pygame.Rect(60 + i * (width + 20), 90, width - 50, SIZE[1] - 150))
        for i in range(3)
    )
    max_n = max(plan.nodes)
    top = max([float(max_n)] + [p.speedup for row in rows.values() for p in row])
    eff_top = max([1.0] + [p.efficiency for row in rows.values() for p in row])
    speed.axes("speed-up (grey: ideal; thin: the fitted law)", max_n, top)
    eff.axes("efficiency", max_n, eff_top)
    speed.line([(1, 1), (max_n, max_n)], max_n, top, IDEAL, 2)
    eff.line([(1, 1.0), (max_n, 1.0)], max_n, eff_top, IDEAL, 2)
    for i, (workers, row) in enumerate(rows.items()):
        colour = SERIES[i % len(SERIES)]
        speed.line([(p.nodes, p.speedup) for p in row], max_n, top, colour, 3, dots=True)
        eff.line([(p.nodes, p.efficiency) for p in row], max_n, eff_top, colour, 3, dots=True)
        serial = fit.serial_fraction(row, weak=weak)
        label = f"{workers} worker(s) per node"
        if serial is not None:
            law = fit.gustafson_speedup if weak else fit.amdahl_speedup
            steps = [1 + (max_n - 1) * k / 60 for k in range(61)]
            speed.line([(n, law(serial, n)) for n in steps], max_n, top, MODEL, 1)
            label += f", serial fraction {serial:.3f}"
        speed.text(label, (speed.rect.x + 8, speed.rect.y + 8 + 20 * i), colour)
    _time_bars(time_, runs)
    return surface


def _time_bars(panel: _Panel, runs: Sequence[ExperimentRun]) -> None:
    """Per point (nodes x workers): the share of its workers' time spent computing
    (green), the rest idle (waiting for the head, the network, each other)."""
    import pygame

    panel.frame("where the time went: workers busy (green) / idle")
    by_point = _by_point(runs)
    keys = sorted(by_point)
    if not keys:
        return
    rect = panel.rect
    step = max(6, (rect.width - 20) // len(keys))
    bar = max(4, step * 2 // 3)
    for i, (workers, nodes) in enumerate(keys):
        c = costs(by_point[(workers, nodes)])
        x = rect.x + 10 + i * step
        if x + bar > rect.right:
            break
        busy = 0.0 if c.busy is None else max(0.0, min(1.0, c.busy))
        h = rect.height - 20
        pygame.draw.rect(panel.surface, IDLE, (x, rect.y + 10, bar, h))
        filled = int(h * busy)
        pygame.draw.rect(panel.surface, BUSY, (x, rect.y + 10 + h - filled, bar, filled))
        panel.text(f"{nodes}x{workers}", (x, rect.bottom + 4))


def write(directory: Path, plan: Plan, runs: Sequence[ExperimentRun]) -> tuple[Path, Path]:
    """``report.txt`` and ``report.png`` in ``directory``; returns their paths."""
    import pygame

    text_path, png_path = directory / "report.txt", directory / "report.png"
    text_path.write_text(summary(plan, runs))
    pygame.image.save(render(plan, runs), str(png_path))
    return text_path, png_path
