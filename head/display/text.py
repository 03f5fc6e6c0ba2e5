"""Rendered text, cached (rendering text is the slowest thing a tile does), and the way
figures are written on screen."""

from collections import OrderedDict

import pygame

from head.display.colors import RGB

MAX_TEXT_BYTES = 4 * 1024 * 1024
"""Pixels the text cache may hold. A full 1920x1080 frame of 240 tiles draws ~1 MB of
text; bounded by count alone (4,096 surfaces) the cache grew all day, 12 MB in the first
540k messages and rising, as the header's clock and the tiles' readings kept making text
it had not seen (the soak benchmark, bench/soak.py, found it)."""


class TextCache:
    """``render(text, size, colour)`` returns a cached surface: least recently used
    first out, bounded in surfaces and in pixel bytes."""

    def __init__(self, max_items: int = 4096, max_bytes: int = MAX_TEXT_BYTES) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.bytes = 0  # pixel bytes held now
        self.evicted = 0
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
        if surface is not None:
            self._surfaces.move_to_end(key)
            return surface
        surface = self.font(size).render(text, True, colour)
        self._surfaces[key] = surface
        self.bytes += _pixel_bytes(surface)
        while len(self._surfaces) > 1 and (
            len(self._surfaces) > self.max_items or self.bytes > self.max_bytes
        ):
            _key, old = self._surfaces.popitem(last=False)
            self.bytes -= _pixel_bytes(old)
            self.evicted += 1
        return surface

    def __len__(self) -> int:
        return len(self._surfaces)

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


def _pixel_bytes(surface: pygame.Surface) -> int:
    return surface.get_width() * surface.get_height() * surface.get_bytesize()


def format_count(n: float) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"
