"""Colours of the display: the temperature scale and the state colours. Pure, no pygame.

The classic scale is the lab's original: 40 °C blue -> 50 green -> 60 yellow -> 70 orange
-> 80 °C red (where a Pi throttles), interpolated continuously. The colour-blind-safe
scale follows cividis (dark blue -> grey -> yellow), which stays ordered in lightness for
every common colour-vision deficiency.
"""

import colorsys
import functools
import zlib
from collections.abc import Sequence

RGB = tuple[int, int, int]

SCALE_MIN_C = 40.0
SCALE_MAX_C = 80.0

PALETTES: dict[str, Sequence[RGB]] = {
    # 40, 50, 60, 70, 80 °C
    "classic": ((40, 90, 255), (30, 200, 70), (250, 225, 30), (255, 140, 0), (230, 20, 20)),
    "cividis": ((0, 34, 78), (63, 77, 107), (124, 123, 120), (190, 175, 111), (253, 231, 55)),
}

BACKGROUND: RGB = (14, 16, 22)
PANEL: RGB = (26, 29, 38)
TEXT: RGB = (235, 238, 245)
TEXT_DIM: RGB = (140, 146, 160)
OFFLINE: RGB = (92, 94, 100)
NEVER_SEEN: RGB = (34, 37, 46)
NO_SENSOR: RGB = (70, 96, 120)
ALERT: RGB = (235, 60, 50)
WARNING: RGB = (255, 200, 0)
OK: RGB = (60, 200, 110)


@functools.lru_cache(maxsize=4096)  # a room of thousands colours a square per node
def temp_color(temp_c: float, palette: str = "classic") -> RGB:
    """The colour of ``temp_c`` on ``palette``; clamped below 40 °C and above 80 °C."""
    stops = PALETTES[palette]
    span = (SCALE_MAX_C - SCALE_MIN_C) / (len(stops) - 1)
    pos = (min(max(temp_c, SCALE_MIN_C), SCALE_MAX_C) - SCALE_MIN_C) / span
    i = min(int(pos), len(stops) - 2)
    frac = pos - i
    lo, hi = stops[i], stops[i + 1]
    r, g, b = (round(a + (c - a) * frac) for a, c in zip(lo, hi, strict=True))
    return (r, g, b)


def blend(a: RGB, b: RGB, amount: float) -> RGB:
    """``a`` moved ``amount`` (0..1) of the way towards ``b``."""
    r, g, bl = (round(x + (y - x) * amount) for x, y in zip(a, b, strict=True))
    return (r, g, bl)


def text_on(background: RGB) -> RGB:
    """Black or white, whichever reads better on ``background``."""
    r, g, b = background
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return (10, 10, 14) if luminance > 140 else (250, 250, 252)


def node_color(node: str) -> RGB:
    """A bright colour of its own for each node (stable: from a hash of its name)."""
    hue = (zlib.crc32(node.encode()) % 360) / 360.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)
