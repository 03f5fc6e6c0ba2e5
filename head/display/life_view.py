"""What the display knows of a Life board: the latest frame of every strip, put together.

Each strip publishes frames on ``piswarm/nodes/<node>/life/<job>/<epoch>/<strip>/frame``
(QoS 0, at most 15 a second): its rows pooled ``scale`` x ``scale`` to one cell, so a whole
board is at most 1024 cells a side. :class:`LifeFrames` keeps, per job, the newest frame
of each strip of the newest epoch and the assembled picture (a boolean numpy array of the
pooled board), updated in place as frames arrive. A pooled row that two strips share (a
strip boundary inside a ``scale``-row band) is the OR of both, as pooling the whole board
would give.

Pure: no MQTT, no pygame. The display's main thread feeds it from the bounded feed
queue. Bounded: ``max_jobs`` boards, each at most 1024 x 2048 cells and one frame per
strip. A frame older than the one it would replace (QoS 0 can reorder across a
reconnect), or from an older epoch, is ignored; a malformed one is logged and counted.
"""

import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from piswarm.protocol import ProtocolError, life, topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StripPicture:
    """The newest frame of one strip."""

    strip: int
    node: str
    row0: int  # board rows [row0, row0 + rows)
    rows: int
    gen: int
    population: int
    first: int  # pooled rows [first, end)
    end: int
    cells: np.ndarray = field(repr=False)  # bool, (end - first, pooled width)


class LifeBoard:
    """The assembled picture of one job's epoch."""

    def __init__(self, frame: life.Frame) -> None:
        self.job = frame.job
        self.epoch = frame.epoch
        self.width = frame.width
        self.height = frame.height
        self.scale = frame.scale
        self.strips = frame.strips
        rows = -(-frame.height // frame.scale)
        self.cells = np.zeros((rows, frame.pooled_width), dtype=bool)
        self.parts: dict[int, StripPicture] = {}
        self.version = 0

    def fits(self, frame: life.Frame) -> bool:
        return (frame.width, frame.height, frame.scale, frame.strips) == (
            self.width,
            self.height,
            self.scale,
            self.strips,
        )

    @property
    def gen(self) -> int | None:
        """The generation every strip shown has reached (None before the first frame)."""
        return min((p.gen for p in self.parts.values()), default=None)

    @property
    def newest_gen(self) -> int | None:
        return max((p.gen for p in self.parts.values()), default=None)

    @property
    def population(self) -> int:
        """Live cells in the frames shown (each strip counted at its own frame's gen)."""
        return sum(p.population for p in self.parts.values())

    def ordered(self) -> list[StripPicture]:
        """The strips heard from, top to bottom."""
        return sorted(self.parts.values(), key=lambda p: p.row0)

    def put(self, part: StripPicture) -> None:
        self.parts[part.strip] = part
        self.cells[part.first : part.end] = part.cells
        for row in {part.first, part.end - 1}:
            # Strips are numbered top down, so only the nearest ones can share a row (more
            # than one each way only when strips are thinner than a pooled row).
            sharing = [part]
            for step in (-1, 1):
                j = part.strip + step
                while (other := self.parts.get(j)) is not None and other.first <= row < other.end:
                    sharing.append(other)
                    j += step
            if len(sharing) > 1:
                self.cells[row] = np.logical_or.reduce([p.cells[row - p.first] for p in sharing])
        self.version += 1


class LifeFrames:
    """Boards of the most recent ``max_jobs`` Life jobs, fed frame by frame."""

    def __init__(self, max_jobs: int = 2) -> None:
        if max_jobs < 1:
            raise ValueError("keep at least one board")
        self.max_jobs = max_jobs
        self.boards: OrderedDict[str, LifeBoard] = OrderedDict()
        self.version = 0  # bumped on every change
        self.malformed = 0
        self.stale = 0

    def board(self, job: str) -> LifeBoard | None:
        return self.boards.get(job)

    def apply(self, topic: str, payload: bytes, _received_at: float) -> bool:
        """Apply one frame message; False when it changes nothing."""
        try:
            node, job, epoch, strip, leaf = topics.parse_life_strip_topic(topic)
            if leaf != "frame":
                return False
            frame, raw = life.decode_frame(payload)
            if (frame.node, frame.job, frame.epoch, frame.strip) != (node, job, epoch, strip):
                raise ProtocolError("the frame's header does not match its topic")
            part = _picture(frame, raw)
        except ProtocolError as exc:
            self.malformed += 1
            log.warning("ignored malformed Life frame on %s: %s", topic, exc)
            return False
        board = self.boards.get(job)
        if board is not None and frame.epoch < board.epoch:
            self.stale += 1
            return False
        if board is None or frame.epoch > board.epoch or not board.fits(frame):
            if board is not None and frame.epoch == board.epoch:
                self.malformed += 1
                log.warning(
                    "ignored a Life frame on %s: its board is %dx%d/%d, not %dx%d/%d",
                    topic,
                    frame.width,
                    frame.height,
                    frame.scale,
                    board.width,
                    board.height,
                    board.scale,
                )
                return False
            board = LifeBoard(frame)
            self.boards[job] = board
        old = board.parts.get(strip)
        if old is not None and old.gen >= frame.gen:
            self.stale += old.gen > frame.gen
            return False
        if part.end > board.cells.shape[0] or part.cells.shape[1] != board.cells.shape[1]:
            self.malformed += 1
            log.warning("ignored a Life frame on %s: it lies outside the board", topic)
            return False
        board.put(part)
        self.boards.move_to_end(job)
        while len(self.boards) > self.max_jobs:
            self.boards.popitem(last=False)
        self.version += 1
        return True


def _picture(frame: life.Frame, raw: bytes) -> StripPicture:
    if frame.row0 + frame.rows > frame.height or frame.strip >= frame.strips:
        raise ProtocolError("the frame lies outside the board")
    first, end = frame.pooled_rows
    packed = np.frombuffer(raw, dtype=np.uint8).reshape(end - first, -1)
    cells = np.unpackbits(packed, axis=1, count=frame.pooled_width).astype(bool)
    return StripPicture(
        strip=frame.strip,
        node=frame.node,
        row0=frame.row0,
        rows=frame.rows,
        gen=frame.gen,
        population=frame.population,
        first=first,
        end=end,
        cells=cells,
    )
