"""What a node measures about itself: temperature, throttling, load, memory, clock, uptime.

Hardware sits behind two small seams so tests need no Pi: the sysfs thermal directory is a
path, and ``vcgencmd`` is run through an injectable ``run`` function. Parsing is pure.

Temperature comes from the first of these that answers: ``/sys/class/thermal`` (every Pi
kernel), ``vcgencmd measure_temp``, psutil's sensors; otherwise it is unknown (``None``).
"""

import logging
import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from piswarm.protocol import Throttle

log = logging.getLogger(__name__)

CommandRunner = Callable[[Sequence[str]], str | None]
"""Runs a command and returns its stdout, or ``None`` when it is missing or fails."""

_PREFERRED_ZONES = ("cpu", "soc", "x86_pkg_temp", "k10temp", "coretemp")


@dataclass(frozen=True)
class Reading:
    """One sample of a node's sensors (the variable part of a telemetry message)."""

    temp_c: float | None
    temp_source: str
    throttle: Throttle | None
    cpu_percent: float
    load: tuple[float, float, float]
    mem_percent: float
    freq_mhz: float | None
    uptime_s: float


class Sensors(Protocol):
    """Anything that can be sampled: the real host, or a simulated Pi."""

    def read(self) -> Reading: ...


def run_command(argv: Sequence[str], timeout: float = 2.0) -> str | None:
    """Run ``argv``; its stdout, or ``None`` if it is missing, fails or hangs."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_measure_temp(text: str) -> float | None:
    """``temp=48.3'C`` -> 48.3."""
    match = re.search(r"temp=(-?\d+(?:\.\d+)?)", text)
    return float(match.group(1)) if match else None


def parse_get_throttled(text: str) -> int | None:
    """``throttled=0x50005`` -> 0x50005."""
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text)
    return int(match.group(1), 0) if match else None


def find_thermal_zone(root: Path) -> Path | None:
    """The ``temp`` file of the CPU's thermal zone under ``root`` (/sys/class/thermal)."""
    zones: list[tuple[int, Path]] = []
    for zone in sorted(root.glob("thermal_zone*")):
        temp = zone / "temp"
        if not temp.is_file():
            continue
        try:
            kind = (zone / "type").read_text().strip().lower()
        except OSError:
            kind = ""
        preferred = any(word in kind for word in _PREFERRED_ZONES)
        zones.append((0 if preferred else 1, temp))
    return min(zones, key=lambda item: item[0])[1] if zones else None


def read_millidegrees(path: Path) -> float | None:
    """A sysfs temperature file (millidegrees C) in degrees C."""
    try:
        return int(path.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


class HostSensors:
    """The real machine's sensors."""

    def __init__(
        self,
        *,
        thermal_root: Path = Path("/sys/class/thermal"),
        vcgencmd: str = "vcgencmd",
        run: CommandRunner = run_command,
    ) -> None:
        self.thermal_root = thermal_root
        self.vcgencmd = vcgencmd
        self.run = run
        self._zone: Path | None = None
        self._zone_searched = False
        self._vcgencmd_works: bool | None = None  # None: not tried yet

    def _vcgencmd(self, *args: str) -> str | None:
        if self._vcgencmd_works is False:
            return None
        out = self.run([self.vcgencmd, *args])
        if self._vcgencmd_works is None:
            self._vcgencmd_works = out is not None
            if out is None:
                log.info("%s is not available: no throttling data", self.vcgencmd)
        return out

    def temperature(self) -> tuple[float | None, str]:
        if not self._zone_searched:
            self._zone = find_thermal_zone(self.thermal_root)
            self._zone_searched = True
        if self._zone is not None:
            value = read_millidegrees(self._zone)
            if value is not None:
                return value, "thermal"
        out = self._vcgencmd("measure_temp")
        value = parse_measure_temp(out) if out else None
        if value is not None:
            return value, "vcgencmd"
        sensors = getattr(psutil, "sensors_temperatures", None)
        if sensors is not None:
            for entries in sensors().values():
                for entry in entries:
                    if entry.current is not None:
                        return float(entry.current), "psutil"
        return None, "unknown"

    def throttle(self) -> Throttle | None:
        out = self._vcgencmd("get_throttled")
        raw = parse_get_throttled(out) if out else None
        return Throttle.from_raw(raw) if raw is not None else None

    def start(self) -> None:
        """Prime psutil's CPU counter so the first reading is meaningful."""
        psutil.cpu_percent(interval=None)

    def read(self) -> Reading:
        temp, source = self.temperature()
        try:
            freq = psutil.cpu_freq()
        except (OSError, NotImplementedError):
            freq = None
        load = os.getloadavg()
        return Reading(
            temp_c=temp,
            temp_source=source,
            throttle=self.throttle(),
            cpu_percent=min(100.0, psutil.cpu_percent(interval=None)),
            load=(load[0], load[1], load[2]),
            mem_percent=psutil.virtual_memory().percent,
            freq_mhz=float(freq.current) if freq and freq.current else None,
            uptime_s=max(0.0, time.time() - psutil.boot_time()),
        )
