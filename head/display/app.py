"""The display's main loop: the only code that touches pygame's screen and events.

Each frame: handle events (keys, scheduled events), apply the messages the MQTT feed has
queued to the model, let the current scene draw what changed, update only those
rectangles, and sleep to the frame rate. MQTT callbacks never touch any of this; they
only fill the feed's bounded queue.

Keys: F fullscreen, 1-9 scene, Space pause rotation, S screenshot, Q quit, Esc quit (unless
the scene uses it to go back); the rest, and clicks, go to the scene showing (the Life
scene zooms and pans with them, a crowded room opens a group).
"""

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pygame

from head.config import DisplayOptions
from head.display.cluster import ClusterModel
from head.display.experiments_view import ExperimentsModel
from head.display.jobs_view import JobsModel
from head.display.life_view import LifeFrames
from head.display.scene import Frame, Link, Scene
from head.display.text import TextCache
from piswarm.client import Message
from piswarm.heap import fewer_collections
from piswarm.protocol import topics

log = logging.getLogger(__name__)


HEADLESS_DRIVERS = frozenset({"offscreen", "dummy"})


CONSOLE_DRIVERS = ("kmsdrm", "rpi")
"""SDL's drivers for a screen without a desktop session (a Pi kiosk on the console)."""

DRAW_ERROR_LOG_EVERY = 10.0  # seconds: a scene that fails every frame is logged this often


def screen_driver() -> str | None:
    """The SDL video driver a window would get here, or None when there is no screen.

    With no X, Wayland or console framebuffer SDL falls back to a headless driver on its
    own, and a window would be drawn where nobody sees it. A driver chosen on purpose
    (``SDL_VIDEODRIVER=dummy`` for tests and screenshots) counts as a screen.

    Without a desktop session (no ``DISPLAY``, no ``WAYLAND_DISPLAY``) only the console
    can show a window: just its drivers are tried, and the one that works is kept in
    ``SDL_VIDEODRIVER``. Letting SDL try them all would also try Wayland, whose library
    prints "XDG_RUNTIME_DIR is invalid or not set" on the way to the headless fallback.
    """
    if os.environ.get("SDL_VIDEODRIVER") or any(
        os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY")
    ):
        driver = _probe()
        if driver in HEADLESS_DRIVERS and not os.environ.get("SDL_VIDEODRIVER"):
            return None
        return driver
    for candidate in CONSOLE_DRIVERS:
        os.environ["SDL_VIDEODRIVER"] = candidate
        driver = _probe()
        if driver is not None:
            return driver
    del os.environ["SDL_VIDEODRIVER"]
    return None


def _probe() -> str | None:
    """The driver SDL's video starts with here, or None when it does not start."""
    try:
        pygame.display.init()
    except pygame.error:
        return None
    try:
        return str(pygame.display.get_driver())
    finally:
        pygame.display.quit()


class Source(Protocol):
    """Where messages come from (``head.display.feed.ClusterFeed``)."""

    connected: threading.Event

    @property
    def refused(self) -> str | None:
        """Why the broker refused us, if it did."""

    @property
    def dropped(self) -> int:
        """Messages it had no room for."""

    def drain(self, limit: int = ...) -> list[Message]: ...


@dataclass
class RunStats:
    frames: int = 0
    seconds: float = 0.0
    screenshots: int = 0
    messages: int = 0  # handed to the models

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


class DisplayApp:
    """Owns the window; build it, then call :meth:`run` from the main thread."""

    def __init__(
        self,
        *,
        model: ClusterModel,
        source: Source,
        scenes: Sequence[Scene],
        options: DisplayOptions,
        jobs: JobsModel | None = None,
        life: LifeFrames | None = None,
        experiments: ExperimentsModel | None = None,
        clock: Callable[[], float] = time.time,
        ticks: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` is the wall clock (staleness, what the scenes show); ``ticks`` a
        monotonic one (when to rotate scenes, how long to run): tests pass hand clocks."""
        if not scenes:
            raise ValueError("a display needs at least one scene")
        self.model = model
        self.jobs = jobs if jobs is not None else JobsModel()
        self.life = life if life is not None else LifeFrames()
        self.experiments = experiments if experiments is not None else ExperimentsModel()
        self.source = source
        self.scenes = list(scenes)
        self.options = options
        self.clock = clock
        self.ticks = ticks
        self.scene_index = 0
        self.paused = False
        self.fullscreen = options.size is None
        self.link = Link("connecting", clock())
        self.stats = RunStats()
        self.errors = 0  # messages that raised past their model (see apply)
        self.draw_errors = 0  # frames a scene failed to draw (see _draw)
        self._report_at = 0.0
        self._draw_error_logged = -DRAW_ERROR_LOG_EVERY
        self.text = TextCache()
        self._screen: pygame.Surface | None = None
        self._full = True
        self._scene_since = self.ticks()

    @property
    def surface(self) -> pygame.Surface:
        """The screen as last drawn."""
        if self._screen is None:
            raise RuntimeError("the display is not running")
        return self._screen

    @property
    def scene(self) -> Scene:
        return self.scenes[self.scene_index]

    def _open_window(self) -> pygame.Surface:
        if self.fullscreen:
            screen = pygame.display.set_mode((0, 0), pygame.FULLSCREEN)
        else:
            screen = pygame.display.set_mode(self.options.size or (1280, 720))
        pygame.display.set_caption("piswarm")
        pygame.mouse.set_visible(not (self.options.kiosk and self.fullscreen))
        self._full = True
        return screen

    def show_scene(self, index: int) -> None:
        if 0 <= index < len(self.scenes) and index != self.scene_index:
            self.scene_index = index
            self._full = True
        self._scene_since = self.ticks()

    def screenshot(self, path: Path | None = None) -> Path:
        """Save the current frame as PNG (default: a timestamped name in screenshot_dir)."""
        if self._screen is None:
            raise RuntimeError("no frame drawn yet")
        if path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.clock()))
            path = self.options.screenshot_dir / f"piswarm-{stamp}-{self.stats.screenshots}.png"
        pygame.image.save(self._screen, str(path))
        self.stats.screenshots += 1
        log.info("screenshot saved to %s", path)
        return path

    def _handle(self, event: pygame.event.Event) -> bool:
        """React to one event; False means quit."""
        if event.type == pygame.QUIT:
            return False
        if event.type == pygame.KEYDOWN:
            key = event.key
            if key == pygame.K_q:
                return False
            if key == pygame.K_ESCAPE:  # a scene may use it to go back (out of a group)
                if self.scene.on_key(key):
                    self._scene_since = self.ticks()
                    return True
                return False
            if key == pygame.K_f:
                self.fullscreen = not self.fullscreen
                self._screen = self._open_window()
            elif key == pygame.K_SPACE:
                self.paused = not self.paused
                log.info("scene rotation %s", "paused" if self.paused else "resumed")
            elif key == pygame.K_s:
                try:
                    self.screenshot()
                except (OSError, pygame.error) as exc:  # a full disk must not stop the kiosk
                    log.error("screenshot not saved: %s", exc)
            elif pygame.K_1 <= key <= pygame.K_9:
                self.show_scene(key - pygame.K_1)
            elif self.scene.on_key(key):
                self._scene_since = self.ticks()  # someone is looking: do not rotate away
        elif event.type == pygame.MOUSEBUTTONDOWN and event.button == 1:
            if self.scene.on_click(event.pos):
                self._scene_since = self.ticks()  # someone is looking: do not rotate away
        elif event.type in (pygame.VIDEORESIZE, pygame.WINDOWEXPOSED):
            self._full = True
        return True

    def apply(self, topic: str, payload: bytes, at: float) -> None:
        """Hand one message to the model it is for. The models refuse bad payloads
        themselves; anything else one message raises is logged and counted here, so that
        it cannot stop the kiosk."""
        try:
            if topic.startswith(topics.JOBS_PREFIX):
                self.jobs.apply(topic, payload, at)
            elif topics.is_life_strip_topic(topic):
                self.life.apply(topic, payload, at)
            elif topic.startswith(topics.EXPERIMENTS_PREFIX):
                self.experiments.apply(topic, payload, at)
            else:
                self.model.apply(topic, payload, at)
        except Exception:  # boundary: one message must not stop the display
            self.errors += 1
            log.exception("failed to show a message on %s (%d so far)", topic, self.errors)

    def _draw(self, screen: pygame.Surface) -> None:
        """Let the scene draw this frame. A scene that raises is logged (once every
        :data:`DRAW_ERROR_LOG_EVERY` seconds, not 60 times a second) and counted, and the
        next frame is drawn whole: one bug must not blank or stop the kiosk."""
        try:
            dirty = self.scene.draw(screen, self.frame(), self._full)
        except Exception:  # boundary: the kiosk runs unattended all day
            self.draw_errors += 1
            self._full = True
            if self.ticks() - self._draw_error_logged >= DRAW_ERROR_LOG_EVERY:
                self._draw_error_logged = self.ticks()
                log.exception(
                    "scene %s failed to draw (%d frames so far)", self.scene.name, self.draw_errors
                )
            return
        self._full = False
        if dirty:
            pygame.display.update(dirty)

    def _update_link(self) -> None:
        connected = self.source.connected.is_set()
        problem = self.source.refused
        if connected and self.link.state != "connected":
            self.link = Link("connected", self.clock())
            log.info("display connected to the broker")
        elif not connected and self.link.state == "connected":
            self.link = Link("lost", self.clock(), problem)
            log.warning("display lost the broker; keeping the last known state")
        elif not connected and problem != self.link.problem:
            self.link = Link(self.link.state, self.link.since, problem)

    def _rotate(self) -> None:
        if not self.options.kiosk or self.paused or len(self.scenes) < 2:
            return
        if self.ticks() - self._scene_since >= self.options.rotate_every:
            self.show_scene((self.scene_index + 1) % len(self.scenes))

    def report(self) -> None:
        """One log line an operator (or the soak benchmark) reads to know the kiosk is
        alive: frames drawn, messages shown, and what it could not show."""
        log.info(
            "display: %d frames, %d messages, %d ignored (%d dropped), %d draw errors, link %s",
            self.stats.frames,
            self.stats.messages,
            self.ignored(),
            self.source.dropped,
            self.draw_errors,
            self.link.state,
        )

    def ignored(self) -> int:
        """Messages this display met and could not show: malformed ones its models refused,
        ones its feed had no room for, and ones that hit a bug (each is logged, with
        warnings rate-limited). The cluster scene's header shows the count."""
        return (
            self.model.stats.malformed
            + self.jobs.malformed
            + self.life.malformed
            + self.experiments.malformed
            + self.source.dropped
            + self.errors
        )

    def frame(self) -> Frame:
        now = self.clock()
        # While the broker is away nothing new can arrive: judge staleness as of the loss,
        # so the last known state is shown as it was, not as everything going stale.
        view_time = self.link.since if self.link.state == "lost" else now
        return Frame(
            self.model,
            now,
            view_time,
            self.link,
            self.options.palette,
            self.text,
            self.jobs,
            self.life,
            self.ignored(),
            self.ticks(),
            self.experiments,
        )

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        duration: float | None = None,
        screenshot: Path | None = None,
        on_start: Callable[["DisplayApp"], None] | None = None,
        on_frame: Callable[["DisplayApp"], bool] | None = None,
    ) -> RunStats:
        """Run until Q/Esc/window close, ``stop``, or ``duration`` seconds.

        With ``screenshot``, the frame at the end of ``duration`` is saved there.
        ``on_start`` runs once the window exists; ``on_frame`` after every frame, and a
        False from it ends the run (tests look at pixels this way).
        """
        # Thousands of messages a second, each some short-lived objects: the collector's
        # default thresholds cost a room of 5,000 nodes 9% of the kiosk's CPU.
        with fewer_collections():
            return self._run(
                stop=stop,
                duration=duration,
                screenshot=screenshot,
                on_start=on_start,
                on_frame=on_frame,
            )

    def _run(
        self,
        *,
        stop: threading.Event | None = None,
        duration: float | None = None,
        screenshot: Path | None = None,
        on_start: Callable[["DisplayApp"], None] | None = None,
        on_frame: Callable[["DisplayApp"], bool] | None = None,
    ) -> RunStats:
        pygame.display.init()
        pygame.font.init()
        # Fonts and rendered text die with pygame.quit(): a cache per run, never reused.
        self.text = TextCache()
        try:
            self._screen = self._open_window()
            w, h = self._screen.get_size()
            log.info(
                "display running at %dx%d%s (%s driver)",
                w,
                h,
                " fullscreen" if self.fullscreen else "",
                pygame.display.get_driver(),
            )
            if on_start is not None:
                on_start(self)
            ticker = pygame.time.Clock()
            started = self.ticks()
            self._report_at = started + self.options.report_every
            running = True
            while running:
                for event in pygame.event.get():
                    running = self._handle(event) and running
                if stop is not None and stop.is_set():
                    running = False
                for message in self.source.drain(5000):
                    self.apply(message.topic, message.payload, message.at)
                    self.stats.messages += 1
                self._update_link()
                self._rotate()
                self._draw(self._screen)
                self.stats.frames += 1
                if self.ticks() >= self._report_at:
                    self._report_at = self.ticks() + self.options.report_every
                    self.report()
                elapsed = self.ticks() - started
                if duration is not None and elapsed >= duration:
                    running = False
                if on_frame is not None and not on_frame(self):
                    running = False
                ticker.tick(self.options.fps)
            self.stats.seconds = self.ticks() - started
            if screenshot is not None:
                self.screenshot(screenshot)
        finally:
            pygame.quit()
        return self.stats
