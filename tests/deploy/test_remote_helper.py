"""The part of the remote helper that can be checked without a Pi."""

from deploy import remote_helper


def test_the_systemd_unit_restarts_the_agent_as_the_user():
    """(systemd does not run here: the unit's text is what can be checked.)"""
    unit = remote_helper.unit_text("pi")
    assert "User=pi\n" in unit and "Restart=always\n" in unit
    assert "ExecStart=" in unit and "-m node_agent agent --config" in unit
    assert f"PYTHONPATH={remote_helper.ROOT / 'current'}" in unit
