"""The experiment scene: the room measuring its own speed-up, as it happens.

Top: the experiment and how far it is. Then one big sentence a visitor understands
("40 Pis: 37.2x faster than one"). Left: speed-up against nodes, the ideal line (twice
the Pis, twice as fast) in grey and the measured curve growing point by point, a line
where the run under way is. Right: the room, every node a square, the run's nodes lit.
Without an experiment it says how to start one.

It changes only when a status arrives (at each run's start and end), so the scene
redraws the whole screen then, and nothing in between.
"""

import pygame

from head.display import colors
from head.display.colors import RGB
from head.display.primes_scene import grid_shape
from head.display.scene import Frame
from head.experiment import fit
from piswarm.protocol.experiments import ExperimentPoint, ExperimentStatus

IDEAL: RGB = (120, 124, 136)
SERIES: list[RGB] = [(90, 170, 255), (255, 170, 60), (170, 120, 255), (60, 200, 200)]
"""A colour per worker count (the first is the fewest workers)."""
LIT: RGB = colors.OK
UNLIT: RGB = (44, 48, 60)
NOW: RGB = colors.WARNING


def series(points: tuple[ExperimentPoint, ...]) -> dict[int, list[fit.Point]]:
    """The status's points by worker count, as the fit module's points."""
    rows: dict[int, list[fit.Point]] = {}
    for p in sorted(points, key=lambda p: (p.workers, p.nodes)):
        rows.setdefault(p.workers, []).append(
            fit.Point(p.nodes, p.workers, p.wall_s, 0.0, p.repeats, p.speedup, p.efficiency)
        )
    return rows


def sentence(status: ExperimentStatus) -> str:
    """The big line: the headline of the workers now measured (or the most measured)."""
    rows = series(status.points)
    if not rows:
        n = status.current_nodes
        return f"Measuring {n} Pi{'s' if n != 1 else ''}..." if n else "Starting..."
    workers = status.current_workers if status.current_workers in rows else max(rows)
    return fit.headline(rows[workers], weak=status.scaling == "weak") or ""


class ExperimentScene:
    """The latest experiment, from the experiments model."""

    name = "experiment"

    def __init__(self) -> None:
        self._drawn: tuple[int, tuple[int, int]] | None = None
        self.plot_rect = pygame.Rect(0, 0, 0, 0)
        self.room_rect = pygame.Rect(0, 0, 0, 0)
        self.sentence_rect = pygame.Rect(0, 0, 0, 0)
        self.node_rects: dict[str, pygame.Rect] = {}  # where each node's square went
        self.max_x = 1
        self.max_y = 1.0

    def on_key(self, _key: int) -> bool:
        return False

    def on_click(self, _pos: tuple[int, int]) -> bool:
        return False

    def at(self, nodes: float, speedup: float) -> tuple[int, int]:
        """Where a point of the plot was drawn (for tests)."""
        r = self.plot_rect
        pad = r.width // 40  # the last point is not on the frame's edge
        fx = (nodes - 1) / (self.max_x - 1) if self.max_x > 1 else 0.5
        fy = min(1.0, max(0.0, speedup / self.max_y))
        x = r.x + pad + round(fx * (r.width - 1 - 2 * pad))
        return x, r.bottom - 1 - pad - round(fy * (r.height - 1 - 2 * pad))

    def draw(self, surface: pygame.Surface, frame: Frame, full: bool) -> list[pygame.Rect]:
        key = (frame.experiments.version, surface.get_size())
        if not full and key == self._drawn:
            return []
        self._drawn = key
        surface.fill(colors.BACKGROUND)
        status = frame.experiments.current()
        if status is None:
            self._draw_idle(surface, frame)
        else:
            self._draw(surface, frame, status)
        return [surface.get_rect()]

    def _draw_idle(self, surface: pygame.Surface, frame: Frame) -> None:
        w, h = surface.get_size()
        frame.text.blit(surface, "How fast is the room?", h // 12, colors.TEXT, (w // 20, h // 10))
        frame.text.blit(
            surface,
            "No experiment yet. Measure the speed-up with:",
            h // 24,
            colors.TEXT_DIM,
            (w // 20, h // 3),
        )
        frame.text.blit(
            surface,
            "piswarm experiment run room --nodes 1..16 --out room",
            h // 18,
            colors.TEXT,
            (w // 20, h // 3 + h // 16),
            max_width=w - w // 10,
        )

    def _draw(self, surface: pygame.Surface, frame: Frame, s: ExperimentStatus) -> None:
        w, h = surface.get_size()
        margin = w // 40
        inner = w - 2 * margin
        title = f"Experiment {s.experiment}: {s.kind}, {s.scaling} scaling"
        frame.text.blit(
            surface, title, h // 24, colors.TEXT_DIM, (margin, h // 40), max_width=inner * 2 // 3
        )
        state = {
            "running": f"run {min(s.runs_done + 1, s.runs_total)} of {s.runs_total}",
            "done": f"done: {s.runs_total} runs",
            "failed": "failed",
            "stopped": f"stopped after {s.runs_done} runs",
        }[s.state]
        colour = colors.ALERT if s.state == "failed" else colors.TEXT_DIM
        label = frame.text.render(state, h // 30, colour)
        surface.blit(label, (w - margin - label.get_width(), h // 40))
        self.sentence_rect = frame.text.blit(
            surface, sentence(s), h // 9, colors.TEXT, (margin, h // 10), max_width=inner
        )
        top = self.sentence_rect.bottom + h // 20
        plot_w = inner * 3 // 5
        self.plot_rect = pygame.Rect(margin + h // 16, top, plot_w - h // 16, h - top - h // 8)
        self._draw_plot(surface, frame, s)
        room_x = self.plot_rect.right + margin * 2
        self.room_rect = pygame.Rect(room_x, top, w - margin - room_x, self.plot_rect.height)
        self._draw_room(surface, frame, s)

    def _draw_plot(self, surface: pygame.Surface, frame: Frame, s: ExperimentStatus) -> None:
        h = surface.get_height()
        r = self.plot_rect
        rows = series(s.points)
        self.max_x = max(2, s.max_nodes, *(p.nodes for p in s.points))
        self.max_y = max([float(self.max_x)] + [p.speedup for p in s.points])
        pygame.draw.rect(surface, colors.PANEL, r)
        small = h // 36
        frame.text.blit(surface, "times faster", small, colors.TEXT_DIM, (r.x, r.y - small - 4))
        frame.text.blit(
            surface, "Pis", small, colors.TEXT_DIM, (r.right - 3 * small, r.bottom + small)
        )
        for n in sorted({1, self.max_x // 2, self.max_x}):
            x, _ = self.at(n, 0)
            frame.text.blit(surface, str(n), small, colors.TEXT_DIM, (x - small // 3, r.bottom + 4))
        for value in sorted({1, round(self.max_y / 2), round(self.max_y)}):
            _, y = self.at(1, value)
            label = frame.text.render(f"{value}x", small, colors.TEXT_DIM)
            surface.blit(label, (r.x - label.get_width() - 6, y - label.get_height() // 2))
        pygame.draw.line(surface, IDEAL, self.at(1, 1), self.at(self.max_x, self.max_x), 3)
        frame.text.blit(
            surface,
            "ideal",
            small,
            IDEAL,
            (self.at(self.max_x, self.max_x)[0] - 3 * small, r.y + 4),
        )
        if s.current_nodes is not None:
            x, _ = self.at(s.current_nodes, 0)
            pygame.draw.line(surface, NOW, (x, r.y), (x, r.bottom - 1), 2)
        for i, (workers, row) in enumerate(sorted(rows.items())):
            colour = SERIES[i % len(SERIES)]
            xy = [self.at(p.nodes, p.speedup) for p in row]
            if len(xy) >= 2:
                pygame.draw.lines(surface, colour, False, xy, 4)
            for p in xy:
                pygame.draw.circle(surface, colour, p, max(4, h // 120))
            frame.text.blit(
                surface,
                f"{workers} worker{'s' if workers != 1 else ''} per Pi",
                small,
                colour,
                (r.x + small, r.y + small // 2 + i * (small + 4)),
            )

    def _draw_room(self, surface: pygame.Surface, frame: Frame, s: ExperimentStatus) -> None:
        h = surface.get_height()
        r = self.room_rect
        lit = set(s.current_ids)
        ids = sorted({v.node_id for v in frame.model.views()} | lit)
        now = "between runs"
        if s.current_nodes is not None:
            now = f"now: {s.current_nodes} Pi{'s' if s.current_nodes != 1 else ''}"
            now += f" x {s.current_workers} worker{'s' if s.current_workers != 1 else ''}"
        frame.text.blit(
            surface, now, h // 28, NOW if lit else colors.TEXT_DIM, (r.x, r.y - h // 28 - 4)
        )
        self.node_rects = {}
        if not ids:
            return
        columns, rows = grid_shape(len(ids), r.width, r.height)
        size = max(2, min(r.width // columns, r.height // rows))
        gap = 1 if size < 8 else 2
        for i, node in enumerate(ids):
            rect = pygame.Rect(
                r.x + (i % columns) * size, r.y + (i // columns) * size, size - gap, size - gap
            )
            pygame.draw.rect(surface, LIT if node in lit else UNLIT, rect)
            self.node_rects[node] = rect
