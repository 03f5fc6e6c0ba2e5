"""Where piswarm keeps its files by default (XDG base directories), overridable by env."""

import os
from collections.abc import Mapping
from pathlib import Path


def config_home(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "piswarm"


def state_home(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "piswarm"


def broker_users_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The broker's users directory: ``$PISWARM_BROKER_DIR`` or ``~/.config/piswarm/broker``."""
    explicit = env.get("PISWARM_BROKER_DIR")
    return Path(explicit).expanduser() if explicit else config_home(env) / "broker"


def credentials_file(users_dir: Path, name: str) -> Path:
    """Where the users directory keeps a broker user's credentials (``broker users``
    writes it; an agent, the simulated fleet and the head read it)."""
    return users_dir / "credentials" / f"{name}.toml"


def cache_home(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "piswarm"
