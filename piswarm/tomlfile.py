"""Reading the TOML files (and environment values) piswarm is configured with, with
one-line errors."""

import tomllib
from pathlib import Path
from typing import Any

from piswarm.errors import ConfigError


def read_toml(path: Path, what: str = "config file") -> dict[str, Any]:
    """The parsed file, or a :class:`ConfigError` naming ``what`` and ``path``."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None


def config_int(value: object, name: str) -> int | None:
    """An integer setting from TOML or the environment (``None`` when unset); a value
    that is not a whole number (``true`` included) is a :class:`ConfigError` naming it."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{name}: {value!r} is not an integer")
    try:
        return int(str(value))
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not an integer") from None


def config_float(value: object, name: str) -> float | None:
    """A number setting from TOML or the environment (``None`` when unset); anything
    else (``true`` included) is a :class:`ConfigError` naming it."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{name}: {value!r} is not a number")
    try:
        return float(str(value))
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not a number") from None
