import pytest

from piswarm.durations import ago, duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (-3.0, "0s"),
        (0.4, "0s"),
        (59.6, "60s"),
        (119.0, "119s"),
        (120.0, "2m"),
        (7199.0, "120m"),
        (7200.0, "2.0h"),
        (5.5 * 3600, "5.5h"),
        (172800.0, "2d"),
        (30 * 86400.0, "30d"),
    ],
)
def test_duration_picks_the_unit_people_read(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_ago_says_how_long_ago() -> None:
    assert ago(5) == "5s ago"
    assert ago(600) == "10m ago"
