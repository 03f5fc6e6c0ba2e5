"""Reading the TOML files piswarm is configured with, with one-line errors."""

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
