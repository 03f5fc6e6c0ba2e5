"""The head's configuration: file < environment < flags, validated once, frozen."""

import dataclasses
from pathlib import Path

import pytest

from head.config import (
    DisplayOptions,
    HeadFile,
    broker_settings,
    display_options,
    jobs_db,
    load_head_config,
)
from piswarm.errors import ConfigError


def _creds(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'username = "{name}"\npassword = "pw-{name}"\n')
    return path


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "head.toml"
    path.write_text(text)
    return path


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    # An empty home: no head.toml and no broker users directory unless a test makes one.
    home = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_STATE_HOME": str(tmp_path / "st")}
    return home | more


def test_defaults_with_only_credentials(tmp_path):
    config = load_head_config({"credentials": _creds(tmp_path, "admin")}, env=_env(tmp_path))
    assert config.db == tmp_path / "st" / "piswarm" / "jobs.sqlite"
    assert config.lease_seconds == 60.0
    assert config.broker.host == "localhost" and config.broker.credentials.username == "admin"
    assert config.display == DisplayOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lease_seconds = 1.0  # type: ignore[misc]


def test_file_then_environment_then_flags(tmp_path):
    path = _file(
        tmp_path,
        f"""
[head]
db = "{tmp_path}/file.sqlite"
lease = 30
double_check = 0.5

[display]
kiosk = true
palette = "cividis"
rotate = 7.5
fps = 25
rows = 4

[broker]
host = "head.lab"
credentials = "{_creds(tmp_path, "admin")}"
""",
    )
    env = _env(tmp_path, PISWARM_HEAD_CONFIG=str(path))
    config = load_head_config({}, env=env)
    assert config.db == tmp_path / "file.sqlite"
    assert (config.lease_seconds, config.double_check) == (30.0, 0.5)
    assert config.broker.host == "head.lab"
    assert config.display == DisplayOptions(
        kiosk=True, palette="cividis", rotate_every=7.5, fps=25, rows=4
    )

    env |= {"PISWARM_JOBS_DB": str(tmp_path / "env.sqlite"), "PISWARM_BROKER_HOST": "env.lab"}
    config = load_head_config({}, env=env)
    assert config.db == tmp_path / "env.sqlite" and config.broker.host == "env.lab"

    flags = {
        "db": tmp_path / "flag.sqlite",
        "lease": 5.0,
        "double_check": 0.0,
        "broker_host": "flag.lab",
        "fps": 60,
        "palette": "classic",
        "windowed": (800, 600),
        "kiosk": None,  # --kiosk not given: the file's true stands
    }
    config = load_head_config(flags, env=env)
    assert config.db == tmp_path / "flag.sqlite" and config.broker.host == "flag.lab"
    assert (config.lease_seconds, config.double_check) == (5.0, 0.0)
    assert config.display is not None
    assert (config.display.fps, config.display.palette, config.display.rotate_every) == (
        60,
        "classic",
        7.5,
    )
    assert config.display.size is None  # a kiosk is fullscreen whatever the window size


def test_no_display_and_explicit_file_flag(tmp_path):
    path = _file(tmp_path, "[head]\nlease = 12\n")
    flags = {"config": path, "no_display": True, "credentials": _creds(tmp_path, "admin")}
    config = load_head_config(flags, env=_env(tmp_path))
    assert config.display is None and config.lease_seconds == 12.0


def test_the_broker_users_directory_gives_each_role_its_login(tmp_path):
    users = tmp_path / "users"
    (users / "credentials").mkdir(parents=True)
    for name in ("admin", "viewer"):
        (users / "credentials" / f"{name}.toml").write_text(
            f'username = "{name}"\npassword = "pw"\n'
        )
    env = _env(tmp_path, PISWARM_BROKER_DIR=str(users))
    assert broker_settings({}, "viewer", env=env).credentials.username == "viewer"
    assert broker_settings({}, "admin", env=env).credentials.username == "admin"
    # Named credentials win over the role's default, from a flag or from the environment.
    other = _creds(tmp_path, "teacher")
    assert broker_settings({"credentials": other}, "viewer", env=env).credentials.username == (
        "teacher"
    )
    env["PISWARM_CREDENTIALS"] = str(other)
    assert broker_settings({}, "viewer", env=env).credentials.username == "teacher"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[head]\nlease = 0\n", "lease 0.0 s is not in 1-86400"),
        ("[head]\nlease = 'soon'\n", "lease: 'soon' is not a number"),
        ("[head]\ndouble_check = 2\n", "double_check 2.0 is not in 0-1"),
        ("[display]\nfps = 'fast'\n", "[display] fps: 'fast' is not an integer"),
        ("[display]\npalette = 'neon'\n", "palette 'neon' is not one of"),
        ("[display]\nwindowed = 'big'\n", "windowed 'big' is not WIDTHxHEIGHT"),
        ("[display]\nwindowed = '10x10'\n", "display size 10x10"),
        ("display = 3\n", "[display] must be a table"),
        ("[head\n", "is not valid TOML"),
    ],
)
def test_a_bad_setting_is_one_clear_error(tmp_path, text, message):
    flags = {"config": _file(tmp_path, text), "credentials": _creds(tmp_path, "admin")}
    with pytest.raises(ConfigError) as caught:
        load_head_config(flags, env=_env(tmp_path))
    assert message in str(caught.value)


def test_the_coordinator_needs_credentials(tmp_path):
    with pytest.raises(ConfigError, match="needs the admin's broker credentials"):
        load_head_config({}, env=_env(tmp_path))


def test_a_missing_file_named_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        HeadFile.find(tmp_path / "nope.toml", _env(tmp_path))


def test_jobs_db_order(tmp_path):
    env = _env(tmp_path)
    assert jobs_db(None, env=env) == tmp_path / "st" / "piswarm" / "jobs.sqlite"
    env["PISWARM_JOBS_DB"] = "~/x.sqlite"
    assert jobs_db(None, env=env) == Path("~/x.sqlite").expanduser()
    assert jobs_db(tmp_path / "f.sqlite", env=env) == tmp_path / "f.sqlite"


def test_screenshot_size_and_demo_default(tmp_path):
    assert DisplayOptions().for_screenshot().size == (1920, 1080)
    assert DisplayOptions(size=(640, 480)).for_screenshot().size == (640, 480)
    assert DisplayOptions(kiosk=True).for_screenshot().size is None
    assert display_options({}, default_size=(1280, 720)).size == (1280, 720)
    assert display_options({"windowed": (800, 600)}, default_size=(1280, 720)).size == (800, 600)
