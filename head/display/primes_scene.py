"""The prime search scene: what the room is finding, and who finds it.

Top to bottom: the job and its state; the largest prime found so far in big digits; primes
found, the rate, nodes at work and the time left; a progress bar; the block map (each
cell a run of blocks, coloured by the node that computed it, dim until done) beside the
top contributors in the same colours. Without a job it says how to start one.

The picture changes only when a status or map arrives (at most once a second), so the
scene redraws the whole screen then, and nothing in between.
"""

import math

import pygame

from head.display import colors
from head.display.colors import RGB, node_color
from head.display.scene import Frame
from head.display.text import format_count
from piswarm.durations import duration
from piswarm.protocol.jobs import JobMap, JobStatus

PENDING: RGB = (40, 44, 56)
BAR: RGB = colors.OK


def grid_shape(cells: int, width: int, height: int) -> tuple[int, int]:
    """Columns and rows for ``cells`` square-ish cells in a ``width`` x ``height`` box."""
    if cells <= 0:
        return 1, 1
    columns = max(1, min(cells, round(math.sqrt(cells * width / max(1, height)))))
    return columns, math.ceil(cells / columns)


class PrimesScene:
    """The current prime search, from the jobs model."""

    name = "primes"

    def __init__(self) -> None:
        self._drawn: tuple[int, tuple[int, int]] | None = None
        self.map_rect = pygame.Rect(0, 0, 0, 0)
        self.bar_rect = pygame.Rect(0, 0, 0, 0)
        self.figure_rects: dict[str, pygame.Rect] = {}  # where each figure's value went
        self.checks_rect = pygame.Rect(0, 0, 0, 0)  # the double-check line, when shown

    def cell_rect(self, index: int, cells: int) -> pygame.Rect:
        """Where cell ``index`` of a map of ``cells`` was drawn (for tests)."""
        columns, rows = grid_shape(cells, self.map_rect.width, self.map_rect.height)
        size = min(self.map_rect.width // columns, self.map_rect.height // rows)
        col, row = index % columns, index // columns
        return pygame.Rect(self.map_rect.x + col * size, self.map_rect.y + row * size, size, size)

    def on_key(self, _key: int) -> bool:
        return False  # no keys of its own

    def on_click(self, _pos: tuple[int, int]) -> bool:
        return False

    def draw(self, surface: pygame.Surface, frame: Frame, full: bool) -> list[pygame.Rect]:
        key = (frame.jobs.version, surface.get_size())
        if not full and key == self._drawn:
            return []
        self._drawn = key
        surface.fill(colors.BACKGROUND)
        status = frame.jobs.current()
        if status is None:
            self._draw_idle(surface, frame)
        else:
            self._draw_job(surface, frame, status, frame.jobs.maps.get(status.job))
        return [surface.get_rect()]

    def _draw_idle(self, surface: pygame.Surface, frame: Frame) -> None:
        w, h = surface.get_size()
        frame.text.blit(surface, "Prime search", h // 12, colors.TEXT, (w // 20, h // 10))
        frame.text.blit(
            surface,
            "No prime search yet. Start one with:",
            h // 24,
            colors.TEXT_DIM,
            (w // 20, h // 3),
        )
        frame.text.blit(
            surface,
            "piswarm job primes 1 1e9",
            h // 16,
            colors.TEXT,
            (w // 20, h // 3 + h // 16),
            max_width=w - w // 10,
        )

    def _draw_job(
        self, surface: pygame.Surface, frame: Frame, s: JobStatus, job_map: JobMap | None
    ) -> None:
        w, h = surface.get_size()
        margin = w // 40
        inner = w - 2 * margin
        title = f"Prime search {s.name or s.job}"
        state = {"running": "running", "done": "finished", "cancelled": "cancelled"}[s.state]
        frame.text.blit(
            surface, title, h // 18, colors.TEXT, (margin, h // 40), max_width=inner * 2 // 3
        )
        state_colour = colors.OK if s.state == "done" else colors.TEXT_DIM
        label = frame.text.render(f"[{s.start:,} .. {s.end:,}]  {state}", h // 30, state_colour)
        surface.blit(label, (w - margin - label.get_width(), h // 40 + h // 90))

        y = h // 9
        frame.text.blit(surface, "largest prime found", h // 32, colors.TEXT_DIM, (margin, y))
        digits = "-" if s.largest is None else f"{s.largest:,}"
        big = frame.text.blit(
            surface, digits, h // 6, colors.TEXT, (margin, y + h // 28), max_width=inner
        )

        y = big.bottom + h // 40
        figures = [
            ("primes found", f"{s.primes:,}"),
            ("twin pairs", "-" if s.twins is None else f"{s.twins:,}"),
            ("largest gap", f"{s.gap:,}" if s.gap else "-"),
            ("per second", format_count(s.rate)),
            ("nodes at work", str(s.nodes)),
            ("time left", duration(s.eta_s) if s.state == "running" else "-"),
        ]
        column = inner // len(figures)
        for i, (name, value) in enumerate(figures):
            x = margin + i * column
            frame.text.blit(surface, name, h // 36, colors.TEXT_DIM, (x, y))
            self.figure_rects[name] = frame.text.blit(
                surface, value, h // 14, colors.TEXT, (x, y + h // 30), max_width=column - margin
            )

        y += h // 30 + h // 14 + h // 40
        self.bar_rect = pygame.Rect(margin, y, inner, max(8, h // 30))
        pygame.draw.rect(surface, colors.PANEL, self.bar_rect)
        filled = self.bar_rect.copy()
        filled.width = round(self.bar_rect.width * s.fraction)
        if filled.width:
            pygame.draw.rect(surface, BAR, filled)
        pct = f"{100 * s.fraction:.1f}%  ({s.blocks_done:,} of {s.blocks_total:,} blocks)"
        frame.text.blit(
            surface, pct, h // 36, colors.TEXT_DIM, (margin, self.bar_rect.bottom + h // 120)
        )
        self.checks_rect = pygame.Rect(0, 0, 0, 0)
        if s.checked or s.mismatches:
            checks = f"{s.checked:,} blocks double-checked"
            colour = colors.TEXT_DIM
            if s.wrong:
                checks += f", wrong results from {', '.join(s.wrong)}"
                colour = colors.ALERT
            label = frame.text.render(checks, h // 36, colour)
            self.checks_rect = surface.blit(
                label, (margin + inner - label.get_width(), self.bar_rect.bottom + h // 120)
            )

        top = self.bar_rect.bottom + h // 20
        legend_w = inner // 4
        self.map_rect = pygame.Rect(margin, top, inner - legend_w - margin, h - top - margin)
        self._draw_map(surface, job_map)
        self._draw_contributors(
            surface,
            frame,
            s,
            pygame.Rect(self.map_rect.right + margin, top, legend_w, self.map_rect.height),
        )

    def _draw_map(self, surface: pygame.Surface, job_map: JobMap | None) -> None:
        if job_map is None or not job_map.owner:
            pygame.draw.rect(surface, PENDING, self.map_rect)
            return
        cells = len(job_map.owner)
        palette = [node_color(n) for n in job_map.nodes]
        for i, (owner, done) in enumerate(zip(job_map.owner, job_map.done, strict=True)):
            rect = self.cell_rect(i, cells)
            if owner < 0 or done == 0:
                colour = PENDING
            else:
                colour = colors.blend(PENDING, palette[owner], 0.35 + 0.65 * done / 100)
            pygame.draw.rect(surface, colour, rect.inflate(-1, -1) if rect.width > 3 else rect)

    def _draw_contributors(
        self, surface: pygame.Surface, frame: Frame, s: JobStatus, box: pygame.Rect
    ) -> None:
        h = surface.get_height()
        frame.text.blit(surface, "top nodes", h // 32, colors.TEXT_DIM, box.topleft)
        line = max(12, h // 26)
        for i, c in enumerate(s.top):
            y = box.y + (i + 1) * line + h // 80
            if y + line > box.bottom:
                break
            swatch = pygame.Rect(box.x, y + line // 6, line * 2 // 3, line * 2 // 3)
            pygame.draw.rect(surface, node_color(c.node), swatch)
            frame.text.blit(
                surface,
                f"{c.node}  {c.blocks:,}",
                h // 32,
                colors.TEXT,
                (swatch.right + line // 3, y),
                max_width=box.width - line,
            )
