"""The head's configuration: a TOML file, then ``PISWARM_*`` environment, then flags.

Read once, validated once, then frozen: the commands pass a :class:`HeadConfig` (or its
:class:`DisplayOptions`) on and nothing changes it afterwards. Example
``~/.config/piswarm/head.toml``::

    [head]
    db = "/var/lib/piswarm/jobs.sqlite"   # default: ~/.local/state/piswarm/jobs.sqlite
    lease = 60.0                          # seconds a node has for a block
    double_check = 0.02                   # share of blocks computed twice (0: none)

    [display]                             # 'piswarm head' and 'piswarm display'
    kiosk = true
    rotate = 20.0                         # seconds per scene in kiosk
    palette = "cividis"                   # classic | cividis (colour-blind safe)
    fps = 60
    layout = "~/room.toml"                # the room's seats (head/display/layout.py)
    screenshot_dir = "~/shots"
    report_every = 60.0                   # seconds between "display: N frames ..." log lines

    [broker]
    host = "localhost"
    credentials = "~/.config/piswarm/broker/credentials/admin.toml"

Environment: ``PISWARM_HEAD_CONFIG`` (the file), ``PISWARM_JOBS_DB``, and the broker's
(``PISWARM_BROKER_HOST``, ``PISWARM_BROKER_PORT``, ``PISWARM_CREDENTIALS``,
``PISWARM_MQTT_USERNAME`` + ``PISWARM_MQTT_PASSWORD``). Without a credentials setting the
head logs in as its role's user from ``piswarm broker users`` (admin for the coordinator
and jobs, viewer for the display and status).
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from piswarm import paths
from piswarm.errors import ConfigError
from piswarm.mqtt import BrokerSettings
from piswarm.protocol.jobs import DEFAULT_DOUBLE_CHECK
from piswarm.tomlfile import config_float, config_int, read_toml

PALETTES = ("classic", "cividis")
SCREENSHOT_SIZE = (1920, 1080)  # a headless screenshot with no size asked for


@dataclass(frozen=True)
class DisplayOptions:
    """How the kiosk shows the cluster."""

    size: tuple[int, int] | None = None  # None: fullscreen at the screen's size
    kiosk: bool = False
    rotate_every: float = 20.0
    fps: int = 60
    palette: str = "classic"
    screenshot_dir: Path = Path()
    layout: Path | None = None
    rows: int = 0  # 0: fit the fleet
    columns: int = 0
    report_every: float = 60.0  # seconds between the log lines that say the kiosk is alive

    def __post_init__(self) -> None:
        if self.size is not None:
            w, h = self.size
            if not (160 <= w <= 10000 and 120 <= h <= 10000):
                raise ConfigError(f"display size {w}x{h}: width 160-10000, height 120-10000")
        if not 0.1 <= self.rotate_every <= 86_400:
            raise ConfigError(f"display rotate {self.rotate_every} s is not in 0.1-86400")
        if not 1 <= self.fps <= 1000:
            raise ConfigError(f"display fps {self.fps} is not in 1-1000")
        if self.palette not in PALETTES:
            raise ConfigError(f"display palette {self.palette!r} is not one of {PALETTES}")
        if not (0 <= self.rows <= 100 and 0 <= self.columns <= 100):
            raise ConfigError(f"display rows {self.rows}, columns {self.columns}: each 0-100")
        if not 1 <= self.report_every <= 86_400:
            raise ConfigError(f"display report_every {self.report_every} s is not in 1-86400")

    def for_screenshot(self) -> "DisplayOptions":
        """The same, rendered off screen: a window not sized is full HD."""
        if self.size is None and not self.kiosk:
            return replace(self, size=SCREENSHOT_SIZE)
        return self


@dataclass(frozen=True)
class HeadConfig:
    """What ``piswarm head`` runs with."""

    broker: BrokerSettings
    db: Path
    lease_seconds: float = 60.0
    double_check: float = DEFAULT_DOUBLE_CHECK
    display: DisplayOptions | None = field(default_factory=DisplayOptions)  # None: none

    def __post_init__(self) -> None:
        if not 1 <= self.lease_seconds <= 86_400:
            raise ConfigError(f"lease {self.lease_seconds} s is not in 1-86400")
        if not 0 <= self.double_check <= 1:
            raise ConfigError(f"double_check {self.double_check} is not in 0-1")
        if self.broker.credentials is None:
            raise ConfigError(
                "the coordinator needs the admin's broker credentials: run "
                "'piswarm broker users init', or pass --credentials"
            )


@dataclass(frozen=True)
class HeadFile:
    """The head's TOML file, read (or empty when there is none)."""

    path: Path | None
    data: Mapping[str, Any]

    @classmethod
    def find(cls, path: Path | None, env: Mapping[str, str]) -> "HeadFile":
        """``path``, else ``$PISWARM_HEAD_CONFIG``, else ``head.toml`` in the config home
        when it exists."""
        explicit = path or _path(env.get("PISWARM_HEAD_CONFIG"))
        if explicit is None and (paths.config_home(env) / "head.toml").is_file():
            explicit = paths.config_home(env) / "head.toml"
        return cls(explicit, read_toml(explicit) if explicit else {})

    def table(self, name: str) -> Mapping[str, Any]:
        table = self.data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{self.path}: [{name}] must be a table")
        return table


def broker_settings(
    flags: Mapping[str, Any],
    user: str,
    *,
    file: HeadFile | None = None,
    env: Mapping[str, str] | None = None,
) -> BrokerSettings:
    """The broker from the file's ``[broker]``, the environment and ``--broker-host``,
    ``--broker-port``, ``--credentials``; with no credentials named anywhere, ``user``'s
    file from the broker users directory (when it exists)."""
    env = os.environ if env is None else env
    table = file.table("broker") if file else {}
    creds = flags.get("credentials")
    named = creds or env.get("PISWARM_CREDENTIALS") or table.get("credentials")
    default = paths.credentials_file(paths.broker_users_dir(env), user)
    if not named and default.exists():
        creds = default
    return BrokerSettings.from_sources(
        table=table,
        env=env,
        host=flags.get("broker_host"),
        port=flags.get("broker_port"),
        credentials_file=creds,
    )


def jobs_db(
    flag: Path | None, *, file: HeadFile | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """The jobs database: ``--db``, ``$PISWARM_JOBS_DB``, ``[head] db``, or ``jobs.sqlite``
    in the state directory."""
    env = os.environ if env is None else env
    table = file.table("head") if file else {}
    chosen = flag or _path(env.get("PISWARM_JOBS_DB")) or _path(table.get("db"))
    return (chosen or paths.state_home(env) / "jobs.sqlite").expanduser()


def display_options(
    flags: Mapping[str, Any], *, file: HeadFile | None = None, default_size: Any = None
) -> DisplayOptions:
    """Flags over the file's ``[display]`` table over the defaults."""
    table = file.table("display") if file else {}

    def pick(flag: str, key: str, default: Any) -> Any:
        value = flags.get(flag)
        return value if value is not None else table.get(key, default)

    kiosk = bool(pick("kiosk", "kiosk", False))
    size = flags.get("windowed") or _size(table.get("windowed")) or default_size
    layout = _path(pick("layout", "layout", None))
    return DisplayOptions(
        size=None if kiosk else size,
        kiosk=kiosk,
        rotate_every=_float(pick("rotate", "rotate", 20.0), "[display] rotate"),
        fps=_int(pick("fps", "fps", 60), "[display] fps"),
        palette=str(pick("palette", "palette", "classic")),
        screenshot_dir=_path(pick("screenshot_dir", "screenshot_dir", ".")) or Path(),
        layout=layout,
        rows=_int(pick("rows", "rows", 0), "[display] rows"),
        columns=_int(pick("columns", "columns", 0), "[display] columns"),
        report_every=_float(table.get("report_every", 60.0), "[display] report_every"),
    )


def load_head_config(
    flags: Mapping[str, Any],
    *,
    file: HeadFile | None = None,
    env: Mapping[str, str] | None = None,
) -> HeadConfig:
    """``piswarm head``'s flags (``vars(args)``) merged with its file (found from
    ``--config`` when not given) and environment."""
    env = os.environ if env is None else env
    file = file or HeadFile.find(flags.get("config"), env)
    table = file.table("head")
    lease = flags.get("lease")
    double_check = flags.get("double_check")
    return HeadConfig(
        broker=broker_settings(flags, "admin", file=file, env=env),
        db=jobs_db(flags.get("db"), file=file, env=env),
        lease_seconds=lease if lease is not None else _float(table.get("lease", 60.0), "lease"),
        double_check=(
            double_check
            if double_check is not None
            else _float(table.get("double_check", DEFAULT_DOUBLE_CHECK), "double_check")
        ),
        display=None if flags.get("no_display") else display_options(flags, file=file),
    )


def _path(value: object) -> Path | None:
    return Path(str(value)).expanduser() if value else None


def _float(value: object, name: str) -> float:
    number = config_float(value, name)
    if number is None:
        raise ConfigError(f"{name}: {value!r} is not a number")
    return number


def _int(value: object, name: str) -> int:
    number = config_int(value, name)
    return 0 if number is None else number


def _size(value: object) -> tuple[int, int] | None:
    if value is None:
        return None
    width, sep, height = str(value).lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise ConfigError(f"[display] windowed {value!r} is not WIDTHxHEIGHT, e.g. 1280x720")
    return int(width), int(height)
