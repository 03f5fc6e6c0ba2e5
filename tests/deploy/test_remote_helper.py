"""The part of the remote helper that can be checked without a Pi."""

import importlib.metadata

import pytest

from deploy import remote_helper


def test_the_systemd_unit_restarts_the_agent_as_the_user():
    """(systemd does not run here: the unit's text is what can be checked.)"""
    unit = remote_helper.unit_text("pi")
    assert "User=pi\n" in unit and "Restart=always\n" in unit
    assert "ExecStart=" in unit and "-m node_agent agent --config" in unit
    assert f"PYTHONPATH={remote_helper.ROOT / 'current'}" in unit


@pytest.mark.parametrize(
    ("version", "specifiers", "ok"),
    [
        ("1.24.2", ">=1.24", True),  # Debian 12's numpy
        ("1.23.5", ">=1.24", False),
        ("2.2.0", "<3,>=2.1", True),
        ("1.6.1", "<3,>=2.1", False),  # Debian 12's paho-mqtt
        ("3.0", "<3,>=2.1", False),
        ("5.9.4", ">=5.9", True),
        ("2.0.0rc1", ">=2", True),
        ("1.4.2", "~=1.4", True),
        ("2.0", "~=1.4", False),
        ("1.26.4", "==1.26.*", True),
        ("1.25.0", "!=1.25.0", False),
        ("1.0", "", True),
        ("1.0", "===1.0", False),  # an operator we do not know: push the wheel instead
    ],
)
def test_version_specifiers_as_pip_reads_them(version, specifiers, ok):
    assert remote_helper.satisfies(version, specifiers) is ok


def test_requirement_names_are_normalised():
    assert remote_helper.requirement_name("paho-mqtt<3,>=2.1") == "paho-mqtt"
    assert remote_helper.requirement_name("Paho_MQTT.x >= 2") == "paho-mqtt-x"
    assert remote_helper.requirement_name("numpy>=1.24; python_version >= '3.11'") == "numpy"


def test_the_system_packages_are_the_ones_this_python_has_in_its_site_packages():
    numpy = importlib.metadata.version("numpy")
    assert remote_helper.system_packages(["numpy>=1.0", "psutil>=99", "no-such-thing>=1"]) == {
        "numpy": numpy
    }
