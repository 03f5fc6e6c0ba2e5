"""Small drawings the scenes share: hatching for stale, the throttled and under-voltage
icons."""

import pygame

from head.display import colors
from head.display.colors import RGB


def hatch(surface: pygame.Surface, rect: pygame.Rect, colour: RGB) -> None:
    clip = surface.get_clip()
    surface.set_clip(rect.inflate(-2, -2))
    for offset in range(-rect.h, rect.w, 9):
        start = (rect.x + offset, rect.bottom)
        end = (rect.x + offset + rect.h, rect.y)
        pygame.draw.line(surface, colour, start, end, 2)
    surface.set_clip(clip)


def warning(surface: pygame.Surface, centre: tuple[int, int]) -> None:
    """Throttled: a red triangle with '!' on a dark disc (visible on any tile colour)."""
    x, y = centre
    pygame.draw.circle(surface, (20, 20, 24), centre, 9)
    pygame.draw.polygon(surface, colors.ALERT, [(x, y - 6), (x - 6, y + 5), (x + 6, y + 5)])
    pygame.draw.line(surface, (255, 255, 255), (x, y - 2), (x, y + 1), 2)
    pygame.draw.line(surface, (255, 255, 255), (x, y + 3), (x, y + 3), 2)


def bolt(surface: pygame.Surface, centre: tuple[int, int]) -> None:
    """Under-voltage: a yellow lightning bolt on a dark disc."""
    x, y = centre
    pygame.draw.circle(surface, (20, 20, 24), centre, 9)
    bolt = [
        (x + 2, y - 7),
        (x - 4, y + 1),
        (x, y + 1),
        (x - 2, y + 7),
        (x + 4, y - 1),
        (x, y - 1),
    ]
    pygame.draw.polygon(surface, colors.WARNING, bolt)
