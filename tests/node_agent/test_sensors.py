"""Sensors: a fake sysfs tree and a fake vcgencmd (the only things that cannot run here)."""

import pytest

from node_agent.sensors import (
    HostSensors,
    find_thermal_zone,
    parse_get_throttled,
    parse_measure_temp,
)


def make_zone(root, n, kind, millideg):
    zone = root / f"thermal_zone{n}"
    zone.mkdir(parents=True)
    (zone / "type").write_text(kind + "\n")
    (zone / "temp").write_text(f"{millideg}\n")


class FakeVcgencmd:
    """Stands in for the Pi firmware tool: answers like a Pi 4 with a weak supply."""

    def __init__(self, temp="temp=61.8'C\n", throttled="throttled=0x50005\n"):
        self.answers = {"measure_temp": temp, "get_throttled": throttled}
        self.calls = []

    def __call__(self, argv):
        self.calls.append(list(argv))
        return self.answers.get(argv[1])


def missing(_argv):
    return None


def test_thermal_zone_is_preferred_and_the_cpu_zone_chosen(tmp_path):
    make_zone(tmp_path, 0, "acpitz", 30000)
    make_zone(tmp_path, 1, "cpu-thermal", 48312)
    sensors = HostSensors(thermal_root=tmp_path, run=FakeVcgencmd())
    assert sensors.temperature() == (48.312, "thermal")
    assert find_thermal_zone(tmp_path) == tmp_path / "thermal_zone1" / "temp"


def test_vcgencmd_is_the_fallback_for_temperature(tmp_path):
    fake = FakeVcgencmd()
    sensors = HostSensors(thermal_root=tmp_path / "none", run=fake)
    assert sensors.temperature() == (61.8, "vcgencmd")


def test_unknown_when_nothing_answers(tmp_path, monkeypatch):
    import psutil

    monkeypatch.setattr(psutil, "sensors_temperatures", lambda: {}, raising=False)
    sensors = HostSensors(thermal_root=tmp_path, run=missing)
    assert sensors.temperature() == (None, "unknown")
    reading = sensors.read()
    assert reading.temp_c is None and reading.temp_source == "unknown"
    assert reading.throttle is None


def test_throttling_decoded_from_vcgencmd(tmp_path):
    sensors = HostSensors(thermal_root=tmp_path, run=FakeVcgencmd())
    throttle = sensors.throttle()
    assert throttle.raw == 0x50005
    assert throttle.now == ("under_voltage", "throttled")


def test_a_missing_vcgencmd_is_asked_once_only(tmp_path):
    calls = []

    def run(argv):
        calls.append(argv)

    sensors = HostSensors(thermal_root=tmp_path, run=run)
    for _ in range(5):
        sensors.read()
    assert len(calls) == 1


def test_real_host_reading_is_complete():
    reading = HostSensors().read()
    assert 0 <= reading.cpu_percent <= 100 and 0 <= reading.mem_percent <= 100
    assert len(reading.load) == 3 and reading.uptime_s > 0


@pytest.mark.parametrize(
    ("text", "value"), [("temp=48.3'C\n", 48.3), ("temp=-2'C", -2.0), ("error", None), ("", None)]
)
def test_parse_measure_temp(text, value):
    assert parse_measure_temp(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [("throttled=0x0\n", 0), ("throttled=0x50005", 0x50005), ("throttled=7", 7), ("nope", None)],
)
def test_parse_get_throttled(text, value):
    assert parse_get_throttled(text) == value
