"""The Life patterns that ship with piswarm (see LICENSE.md here: CC0, credits)."""

from importlib import resources
from pathlib import Path

from piswarm.errors import ConfigError


def bundled() -> list[str]:
    """Names of the bundled patterns, e.g. ``gosper-glider-gun``."""
    folder = resources.files(__name__)
    return sorted(p.name.removesuffix(".rle") for p in folder.iterdir() if p.name.endswith(".rle"))


def read_pattern(name_or_path: str) -> tuple[str, str]:
    """The RLE text of a bundled pattern (by name) or of a file, and its name for
    error messages."""
    if name_or_path in bundled():
        text = resources.files(__name__).joinpath(f"{name_or_path}.rle").read_text("utf-8")
        return text, name_or_path
    path = Path(name_or_path).expanduser()
    try:
        return path.read_text("utf-8"), str(path)
    except FileNotFoundError:
        raise ConfigError(
            f"--pattern {name_or_path}: no such file, and not a bundled pattern "
            f"({', '.join(bundled())})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--pattern {name_or_path}: cannot read it: {exc}") from None
