"""Rendered text, cached (rendering text is the slowest thing a tile does), and the way
figures are written on screen."""

from collections import OrderedDict

import pygame

from head.display.colors import RGB


class TextCache:
    """``render(text, size, colour)`` returns a cached surface (bounded LRU)."""

    def __init__(self, max_items: int = 4096) -> None:
        self.max_items = max_items
        self._fonts: dict[int, pygame.font.Font] = {}
        self._surfaces: OrderedDict[tuple[str, int, RGB], pygame.Surface] = OrderedDict()

    def font(self, size: int) -> pygame.font.Font:
        font = self._fonts.get(size)
        if font is None:
            # The bundled font: always present (a Pi may have no system fonts) and has "°".
            font = self._fonts[size] = pygame.font.Font(None, max(6, size))
        return font

    def render(self, text: str, size: int, colour: RGB) -> pygame.Surface:
        key = (text, size, colour)
        surface = self._surfaces.get(key)
        if surface is None:
            surface = self.font(size).render(text, True, colour)
            self._surfaces[key] = surface
            if len(self._surfaces) > self.max_items:
                self._surfaces.popitem(last=False)
        else:
            self._surfaces.move_to_end(key)
        return surface

    def fit(self, text: str, size: int, max_width: int) -> int:
        """The largest size <= ``size`` at which ``text`` is at most ``max_width`` wide."""
        while size > 6 and self.font(size).size(text)[0] > max_width:
            size -= 1
        return size

    def blit(
        self,
        surface: pygame.Surface,
        text: str,
        size: int,
        colour: RGB,
        at: tuple[int, int],
        *,
        max_width: int | None = None,
    ) -> pygame.Rect:
        """Draw ``text`` at ``at`` (shrunk to fit ``max_width``); the rectangle it took."""
        if max_width is not None:
            size = self.fit(text, size, max_width)
        return surface.blit(self.render(text, size, colour), at)


def format_count(n: float) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"
