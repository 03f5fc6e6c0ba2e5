"""Agent configuration: file < environment < flags, and clear errors."""

import pytest

from node_agent.config import load_agent_config
from piswarm.errors import ConfigError


@pytest.fixture
def creds(tmp_path):
    path = tmp_path / "creds.toml"
    path.write_text('username = "pi-1"\npassword = "s3cret"\nrole = "node"\n')
    return path


def write(tmp_path, text):
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_file_then_environment_then_flags(tmp_path, creds):
    cfg_file = write(
        tmp_path,
        f'[agent]\nnode_id = "pi-1"\ntelemetry_interval = 7\n'
        f'[broker]\nhost = "head"\nport = 1884\ncredentials = "{creds}"\n',
    )
    cfg = load_agent_config(config_file=cfg_file, env={})
    assert (cfg.node_id, cfg.telemetry_interval, cfg.broker.host, cfg.broker.port) == (
        "pi-1",
        7.0,
        "head",
        1884,
    )
    assert cfg.broker.credentials.username == "pi-1"
    assert "s3cret" not in repr(cfg)  # secrets never printed
    env = {
        "PISWARM_NODE_ID": "pi-2",
        "PISWARM_BROKER_PORT": "1885",
        "PISWARM_TELEMETRY_INTERVAL": "2",
    }
    cfg = load_agent_config(config_file=cfg_file, env=env)
    assert (cfg.node_id, cfg.broker.port, cfg.telemetry_interval) == ("pi-2", 1885, 2.0)
    cfg = load_agent_config(config_file=cfg_file, env=env, node_id="pi-3", broker_port=1886)
    assert (cfg.node_id, cfg.broker.port) == ("pi-3", 1886)


def test_password_from_environment(tmp_path):
    env = {"PISWARM_MQTT_USERNAME": "pi-1", "PISWARM_MQTT_PASSWORD": "x", "PISWARM_NODE_ID": "pi-1"}
    assert load_agent_config(env=env).broker.credentials.password == "x"
    with pytest.raises(ConfigError, match="set both"):
        load_agent_config(env={"PISWARM_MQTT_USERNAME": "pi-1", "PISWARM_NODE_ID": "pi-1"})


def test_the_test_fault_comes_from_the_environment_alone(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nnode_id = "pi-1"\nfault = "drop-prime"\n')
    assert load_agent_config(config_file=config, env={}).fault == ""  # not from a file
    env = {"PISWARM_TEST_FAULT": "drop-prime"}
    assert load_agent_config(config_file=config, env=env).fault == "drop-prime"
    with pytest.raises(ConfigError, match="PISWARM_TEST_FAULT='everything': unknown"):
        load_agent_config(config_file=config, env={"PISWARM_TEST_FAULT": "everything"})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[agent]\nnode_id = "Pi_1"\n', "invalid node id 'Pi_1'"),
        ('[agent]\nnode_id = "viewer"\n', "reserved"),
        ('[agent]\nnode_id = "pi-1"\ntelemetry_interval = 0\n', None),
        ('[agent]\nnode_id = "pi-1"\ntelemetry_interval = 99999\n', "not in 0.05-3600"),
        ('[agent]\nnode_id = "pi-1"\n[broker]\nport = 70000\n', "port 70000"),
        ('[agent]\nnode_id = "pi-1"\n[broker]\nport = "x"\n', "not an integer"),
        ("[agent\n", "not valid TOML"),
        ('agent = "x"\n', "must be a table"),
        ('[broker]\ncredentials = "/nonexistent/c.toml"\n[agent]\nnode_id="a"\n', "does not exist"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, text, reason):
    path = write(tmp_path, text)
    if reason is None:  # 0 means "not set": the default applies
        assert load_agent_config(config_file=path, env={}).telemetry_interval == 5.0
        return
    with pytest.raises(ConfigError, match=reason):
        load_agent_config(config_file=path, env={})


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_agent_config(config_file=tmp_path / "nope.toml", env={})


def test_default_node_id_is_the_hostname(monkeypatch, tmp_path):
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "Desk04-Pi2.lab.example")
    assert load_agent_config(env={"XDG_CONFIG_HOME": str(tmp_path)}).node_id == "desk04-pi2"
