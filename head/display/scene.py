"""What every scene gets to draw with, and what a scene is."""

from dataclasses import dataclass, field
from typing import Literal, Protocol

import pygame

from head.display.cluster import ClusterModel
from head.display.experiments_view import ExperimentsModel
from head.display.jobs_view import JobsModel
from head.display.life_view import LifeFrames
from head.display.text import TextCache


@dataclass(frozen=True)
class Link:
    """The display's connection to the broker, as the header shows it."""

    state: Literal["connecting", "connected", "lost"]
    since: float  # wall clock of the last change
    problem: str | None = None  # e.g. "Not authorized"


@dataclass(frozen=True)
class Frame:
    """Everything a scene needs for one frame."""

    model: ClusterModel
    now: float  # wall clock
    view_time: float  # "now" for staleness: frozen while the broker is unreachable
    link: Link
    palette: str
    text: TextCache
    jobs: JobsModel = field(default_factory=JobsModel)
    life: LifeFrames = field(default_factory=LifeFrames)
    ignored: int = 0  # bad messages this display met (see DisplayApp.ignored)
    ticks: float = 0.0  # the app's monotonic clock: what paces redraws (never the wall clock)
    experiments: ExperimentsModel = field(default_factory=ExperimentsModel)


class Scene(Protocol):
    name: str

    def draw(self, surface: pygame.Surface, frame: Frame, full: bool) -> list[pygame.Rect]:
        """Draw what changed (everything when ``full``); return the rectangles touched."""
        ...

    def on_key(self, key: int) -> bool:
        """A key the app does not use itself (zoom, pan); True when the scene used it."""
        ...

    def on_click(self, pos: tuple[int, int]) -> bool:
        """A left click (or a touch) at ``pos``; True when the scene used it."""
        ...
