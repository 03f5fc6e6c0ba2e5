"""The Game of Life scene: the board the room is computing, each Pi's strip in its colour.

Top to bottom: the job and its state; the generation, generations a second, live cells
and nodes taking part; a progress bar; the board scaled to fit, beside a legend of the
nodes. Each strip's live cells are drawn in its node's colour on a faint tint of it, with
a line where one strip meets the next, so visitors see who computes what.

Keys (while this scene shows): ``+`` / ``-`` zoom, arrow keys pan, ``0`` shows the whole
board again. The board is redrawn when a frame arrives, at most 15 times a second; the
strips send no more than that.
"""

from dataclasses import dataclass

import numpy as np
import pygame

from head.display import colors
from head.display.colors import RGB, node_color
from head.display.life_view import LifeBoard
from head.display.scene import Frame
from head.display.text import format_count
from piswarm.durations import duration
from piswarm.protocol.life import LifeStatus

MAX_REDRAWS_PER_S = 15
MAX_ZOOM = 64
UNCLAIMED: RGB = (20, 22, 30)  # rows no strip has sent yet
TINT = 0.14  # how much of a node's colour its strip's dead cells get
PAN_STEP = 0.125  # of the visible width or height per key press

ZOOM_IN = frozenset({pygame.K_PLUS, pygame.K_EQUALS, pygame.K_KP_PLUS})
ZOOM_OUT = frozenset({pygame.K_MINUS, pygame.K_KP_MINUS})
RESET = frozenset({pygame.K_0, pygame.K_KP0, pygame.K_HOME})
PAN = {
    pygame.K_LEFT: (-1, 0),
    pygame.K_RIGHT: (1, 0),
    pygame.K_UP: (0, -1),
    pygame.K_DOWN: (0, 1),
}


@dataclass(frozen=True)
class View:
    """What part of the board shows: ``zoom`` times magnified around ``centre`` (fractions
    of the board's width and height)."""

    zoom: int = 1
    centre: tuple[float, float] = (0.5, 0.5)

    def window(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The visible cells of a ``width`` x ``height`` board: x0, y0, x1, y1."""
        vw, vh = max(1, round(width / self.zoom)), max(1, round(height / self.zoom))
        x0 = min(max(0, round(self.centre[0] * width - vw / 2)), width - vw)
        y0 = min(max(0, round(self.centre[1] * height - vh / 2)), height - vh)
        return x0, y0, x0 + vw, y0 + vh

    def zoomed(self, factor: float) -> "View":
        zoom = int(min(MAX_ZOOM, max(1, self.zoom * factor)))
        return View(zoom, self.centre if zoom > 1 else (0.5, 0.5))

    def panned(self, dx: int, dy: int) -> "View":
        step = PAN_STEP / self.zoom
        half = 0.5 / self.zoom
        x = min(max(half, self.centre[0] + dx * step), 1 - half)
        y = min(max(half, self.centre[1] + dy * step), 1 - half)
        return View(self.zoom, (x, y))


def board_pixels(board: LifeBoard, window: tuple[int, int, int, int]) -> np.ndarray:
    """The visible part of the board as an RGB array (rows, columns, 3), pure numpy."""
    x0, y0, x1, y1 = window
    rows = board.cells.shape[0]
    live = np.empty((rows, 3), dtype=np.uint8)
    dead = np.empty((rows, 3), dtype=np.uint8)
    live[:] = colors.TEXT
    dead[:] = UNCLAIMED
    for part in board.ordered():
        colour = node_color(part.node)
        live[part.first : part.end] = colour
        dead[part.first : part.end] = colors.blend(colors.BACKGROUND, colour, TINT)
    cells = board.cells[y0:y1, x0:x1, None]
    return np.where(cells, live[y0:y1, None, :], dead[y0:y1, None, :])


class LifeScene:
    """The current Life job, from the jobs model and the assembled frames."""

    name = "life"

    def __init__(self) -> None:
        self.view = View()
        self.board_rect = pygame.Rect(0, 0, 0, 0)  # where the board was drawn
        self._window = (0, 0, 1, 1)
        self._board_scale = 1  # board cells per pooled cell
        self._drawn: tuple[object, ...] | None = None
        self._drawn_at = -1e18

    def on_click(self, _pos: tuple[int, int]) -> bool:
        return False

    def on_key(self, key: int) -> bool:
        """Zoom and pan; True when the key was this scene's."""
        if key in ZOOM_IN:
            self.view = self.view.zoomed(2)
        elif key in ZOOM_OUT:
            self.view = self.view.zoomed(0.5)
        elif key in RESET:
            self.view = View()
        elif key in PAN:
            self.view = self.view.panned(*PAN[key])
        else:
            return False
        return True

    def cell_center(self, x: int, y: int) -> tuple[int, int] | None:
        """The screen pixel at the middle of board cell (x, y) as last drawn, or None when
        it is out of view (for tests and for anyone pointing at the screen)."""
        x0, y0, x1, y1 = self._window
        px, py = x // self._board_scale, y // self._board_scale  # the pooled cell
        if not (x0 <= px < x1 and y0 <= py < y1) or not self.board_rect.width:
            return None
        kx = self.board_rect.width / (x1 - x0)
        ky = self.board_rect.height / (y1 - y0)
        return (
            self.board_rect.x + int((px + 0.5 - x0) * kx),
            self.board_rect.y + int((py + 0.5 - y0) * ky),
        )

    def draw(self, surface: pygame.Surface, frame: Frame, full: bool) -> list[pygame.Rect]:
        status = frame.jobs.current_life()
        board = frame.life.board(status.job) if status is not None else None
        board_version = (board.epoch, board.version) if board is not None else None
        key = (status, board_version, surface.get_size(), self.view)
        if not full and key == self._drawn:
            return []
        only_frames = (
            self._drawn is not None and key[0] == self._drawn[0] and key[2:] == self._drawn[2:]
        )
        if not full and only_frames and frame.ticks - self._drawn_at < 1 / MAX_REDRAWS_PER_S:
            return []  # a new frame, but the board was drawn a moment ago: next time
        self._drawn, self._drawn_at = key, frame.ticks
        surface.fill(colors.BACKGROUND)
        if status is None:
            self._draw_idle(surface, frame)
        else:
            self._draw_job(surface, frame, status, board)
        return [surface.get_rect()]

    def _draw_idle(self, surface: pygame.Surface, frame: Frame) -> None:
        w, h = surface.get_size()
        self.board_rect = pygame.Rect(0, 0, 0, 0)
        frame.text.blit(surface, "Game of Life", h // 12, colors.TEXT, (w // 20, h // 10))
        frame.text.blit(
            surface,
            "No Game of Life yet. Start one with:",
            h // 24,
            colors.TEXT_DIM,
            (w // 20, h // 3),
        )
        frame.text.blit(
            surface,
            "piswarm job life --size 1024x576 --gens 100000 --random 0.3",
            h // 18,
            colors.TEXT,
            (w // 20, h // 3 + h // 16),
            max_width=w - w // 10,
        )

    def _draw_job(
        self, surface: pygame.Surface, frame: Frame, s: LifeStatus, board: LifeBoard | None
    ) -> None:
        w, h = surface.get_size()
        margin = w // 40
        inner = w - 2 * margin
        frame.text.blit(
            surface,
            f"Game of Life {s.name or s.job}",
            h // 18,
            colors.TEXT,
            (margin, h // 40),
            max_width=inner * 2 // 3,
        )
        state = {"running": "running", "done": "finished"}.get(s.state, s.state)
        state_colour = {"done": colors.OK, "failed": colors.ALERT}.get(s.state, colors.TEXT_DIM)
        label = frame.text.render(f"{s.width}x{s.height} {s.wrap}  {state}", h // 30, state_colour)
        surface.blit(label, (w - margin - label.get_width(), h // 40 + h // 90))

        complete = board is not None and len(board.parts) == board.strips
        shown_gen = board.gen if board is not None and board.gen is not None else s.gen
        cells = board.population if board is not None and complete else s.population
        figures = [
            ("generation", f"{shown_gen:,} / {s.gens:,}"),
            ("generations/s", format_count(s.rate)),
            ("live cells", f"{cells:,}"),
            ("nodes", f"{len(s.nodes)} ({s.strips} strips)"),
            ("time left", duration(s.eta_s) if s.state == "running" else "-"),
        ]
        y = h // 10
        column = inner // len(figures)
        for i, (name, value) in enumerate(figures):
            x = margin + i * column
            frame.text.blit(surface, name, h // 40, colors.TEXT_DIM, (x, y))
            frame.text.blit(
                surface,
                value,
                h // 20,
                colors.TEXT,
                (x, y + h // 34),
                max_width=column - margin // 2,
            )
        y += h // 34 + h // 20 + h // 80
        bar = pygame.Rect(margin, y, inner, max(4, h // 90))
        pygame.draw.rect(surface, colors.PANEL, bar)
        if s.fraction > 0:
            pygame.draw.rect(
                surface, colors.OK, (bar.x, bar.y, round(bar.width * s.fraction), bar.height)
            )
        if s.error:
            frame.text.blit(
                surface, s.error, h // 36, colors.ALERT, (margin, bar.bottom + 2), max_width=inner
            )

        top = bar.bottom + h // 30
        legend_w = inner // 6
        box = pygame.Rect(margin, top, inner - legend_w - margin, h - top - margin)
        if board is None or not board.parts:
            self.board_rect = pygame.Rect(0, 0, 0, 0)
            pygame.draw.rect(surface, colors.PANEL, box)
            frame.text.blit(
                surface,
                "waiting for the strips' first frames",
                h // 30,
                colors.TEXT_DIM,
                (box.x + margin, box.y + margin),
            )
        else:
            self._draw_board(surface, board, box)
        self._draw_legend(
            surface, frame, s, board, pygame.Rect(box.right + margin, top, legend_w, box.height)
        )

    def _draw_board(self, surface: pygame.Surface, board: LifeBoard, box: pygame.Rect) -> None:
        rows, columns = board.cells.shape
        window = self.view.window(columns, rows)
        x0, y0, x1, y1 = window
        # Cells stay square: the board's own aspect (a pooled edge cell may be partial).
        aspect_w, aspect_h = (x1 - x0) * board.scale, (y1 - y0) * board.scale
        k = min(box.width / aspect_w, box.height / aspect_h)
        size = (max(1, round(aspect_w * k)), max(1, round(aspect_h * k)))
        rect = pygame.Rect((0, 0), size)
        rect.center = box.center
        pixels = board_pixels(board, window)
        picture = pygame.surfarray.make_surface(np.ascontiguousarray(pixels.transpose(1, 0, 2)))
        surface.blit(pygame.transform.scale(picture, size), rect)
        self.board_rect, self._window, self._board_scale = rect, window, board.scale
        # A line where one strip meets the next, in the lower strip's colour, unless the
        # strips are so thin that lines would hide the board.
        per_row = rect.height / (y1 - y0)
        parts = board.ordered()
        if len(parts) > 1 and per_row * board.cells.shape[0] / len(parts) >= 6:
            for part in parts[1:]:
                y = rect.y + round((part.row0 / board.scale - y0) * per_row)
                if rect.y < y < rect.bottom:
                    line = colors.blend(node_color(part.node), colors.TEXT, 0.3)
                    pygame.draw.line(surface, line, (rect.x, y), (rect.right - 1, y))
        pygame.draw.rect(surface, colors.PANEL, rect.inflate(2, 2), 1)

    def _draw_legend(
        self,
        surface: pygame.Surface,
        frame: Frame,
        s: LifeStatus,
        board: LifeBoard | None,
        box: pygame.Rect,
    ) -> None:
        h = surface.get_height()
        frame.text.blit(surface, "strips", h // 32, colors.TEXT_DIM, box.topleft)
        line = max(12, h // 30)
        parts = board.ordered() if board is not None else []
        zoom = f"zoom {self.view.zoom}x" if self.view.zoom > 1 else ""
        if zoom:
            frame.text.blit(surface, zoom, h // 36, colors.TEXT_DIM, (box.x, box.bottom - line))
        for i, part in enumerate(parts):
            y = box.y + (i + 1) * line + h // 80
            if y + 2 * line > box.bottom:
                more = len(parts) - i
                frame.text.blit(surface, f"... {more} more", h // 36, colors.TEXT_DIM, (box.x, y))
                break
            swatch = pygame.Rect(box.x, y + line // 6, line * 2 // 3, line * 2 // 3)
            pygame.draw.rect(surface, node_color(part.node), swatch)
            frame.text.blit(
                surface,
                part.node,
                h // 36,
                colors.TEXT,
                (swatch.right + line // 3, y),
                max_width=box.width - line,
            )
        if not parts and s.nodes:
            frame.text.blit(
                surface,
                ", ".join(s.nodes),
                h // 40,
                colors.TEXT_DIM,
                (box.x, box.y + line),
                max_width=box.width,
            )
