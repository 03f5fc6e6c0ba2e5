"""Life patterns in the RLE format of Golly and LifeWiki: parse and write. Pure: no I/O.

A file is ``#`` comment lines (``#N`` name, ``#C`` comments, ``#O`` author), a header
``x = 3, y = 3, rule = B3/S23`` and run-length encoded rows: ``b`` (or ``.``) dead,
``o`` (or ``A``) alive, ``$`` ends a row, ``!`` ends the pattern, a number before any of
them repeats it. Only Conway's rule is accepted. Every error names its line and column.
"""

import re
from dataclasses import dataclass

import numpy as np

from piswarm.errors import PiswarmError

MAX_PATTERN_CELLS = 1 << 26
"""The largest bounding box (x * y) accepted, well past any board piswarm runs."""

_HEADER = re.compile(
    r"\s*x\s*=\s*(?P<x>\d+)\s*,\s*y\s*=\s*(?P<y>\d+)\s*(?:,\s*rule\s*=\s*(?P<rule>\S+)\s*)?",
    re.IGNORECASE,
)
_CONWAY = {"b3/s23", "23/3", "s23/b3"}
_DEAD, _ALIVE = frozenset("b."), frozenset("oA")
_LINE_WIDTH = 70


class RleError(PiswarmError):
    """A pattern that is not valid RLE; the message names where."""


@dataclass(frozen=True)
class Pattern:
    name: str
    cells: np.ndarray  # (y, x) uint8 of 0/1, the header's bounding box
    comments: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        return int(self.cells.shape[1])

    @property
    def height(self) -> int:
        return int(self.cells.shape[0])


def parse_rle(text: str, source: str = "pattern") -> Pattern:
    """The pattern in ``text``; ``source`` (a file name) starts every error message."""
    name, comments = "", []
    lines = text.splitlines()
    index = 0
    while index < len(lines) and (lines[index].startswith("#") or not lines[index].strip()):
        line = lines[index]
        if line[:2] in ("#N", "#n"):
            name = line[2:].strip()
        elif line[:2] in ("#C", "#c", "#O"):
            comments.append(line[2:].strip())
        index += 1
    if index == len(lines):
        raise RleError(f"{source}: no header line 'x = ..., y = ...'")
    header = _HEADER.fullmatch(lines[index])
    if header is None:
        raise RleError(
            f"{source} line {index + 1}, column 1: expected 'x = <width>, y = <height>"
            f"[, rule = B3/S23]', found {lines[index].strip()[:40]!r}"
        )
    width, height = int(header["x"]), int(header["y"])
    rule = header["rule"]
    if rule is not None and rule.lower() not in _CONWAY:
        column = header.start("rule") + 1
        raise RleError(
            f"{source} line {index + 1}, column {column}: rule {rule!r} is not Conway's Life "
            "(B3/S23)"
        )
    if width * height > MAX_PATTERN_CELLS:
        raise RleError(f"{source} line {index + 1}: {width} x {height} is too large a pattern")
    cells = np.zeros((height, width), dtype=np.uint8)
    _fill(cells, lines, index + 1, source)
    return Pattern(name=name, cells=cells, comments=tuple(comments))


def _fill(cells: np.ndarray, lines: list[str], first: int, source: str) -> None:
    height, width = cells.shape
    x = y = 0
    run = ""
    for number, line in enumerate(lines[first:], start=first + 1):
        for column, char in enumerate(line, start=1):
            where = f"{source} line {number}, column {column}"
            if char.isdigit():
                run += char
                if len(run) > 9:
                    raise RleError(f"{where}: run count {run}... is absurdly long")
                continue
            if char.isspace():
                if run:
                    raise RleError(f"{where}: a run count must be followed by b, o, $ or !")
                continue
            count = int(run) if run else 1
            run = ""
            if char == "!":
                return
            if char == "$":
                y, x = y + count, 0
            elif char in _DEAD or char in _ALIVE:
                if y >= height or x + count > width:
                    raise RleError(
                        f"{where}: cells past the {width} x {height} the header declares "
                        f"(row {y + 1}, up to column {x + count})"
                    )
                if char in _ALIVE:
                    cells[y, x : x + count] = 1
                x += count
            else:
                raise RleError(f"{where}: unexpected {char!r} (expected b, o, $, ! or a count)")
    raise RleError(f"{source}: the pattern does not end with '!'")


def format_rle(cells: np.ndarray, name: str = "", comments: tuple[str, ...] = ()) -> str:
    """``cells`` ((y, x) of 0/1) as RLE text, lines at most 70 characters."""
    board = np.asarray(cells).astype(bool)
    height, width = board.shape
    head = [f"#N {name}"] if name else []
    head += [f"#C {c}" for c in comments]
    head.append(f"x = {width}, y = {height}, rule = B3/S23")
    tokens: list[str] = []
    blank_rows = 0
    for row in board:
        alive = np.flatnonzero(row)
        if alive.size == 0:
            blank_rows += 1
            continue
        if tokens or blank_rows:
            ends = blank_rows + (1 if tokens else 0)
            if ends:
                tokens.append(f"{ends}$" if ends > 1 else "$")
        blank_rows = 0
        # runs of equal cells up to the last live one
        trimmed = row[: alive[-1] + 1]
        change = np.flatnonzero(np.diff(trimmed.astype(np.int8))) + 1
        starts = np.concatenate(([0], change))
        stops = np.concatenate((change, [trimmed.size]))
        for start, stop in zip(starts, stops, strict=True):
            count = int(stop - start)
            char = "o" if trimmed[start] else "b"
            tokens.append(f"{count}{char}" if count > 1 else char)
    tokens.append("!")
    body, line = [], ""
    for token in tokens:
        if len(line) + len(token) > _LINE_WIDTH:
            body.append(line)
            line = ""
        line += token
    body.append(line)
    return "\n".join(head + body) + "\n"
