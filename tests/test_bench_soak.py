"""bench/soak.py's arithmetic: growth per million messages, fitted after the warm-up."""

import pytest

from bench.soak import Series


def test_growth_is_the_fitted_slope_after_the_warmup_as_a_share_of_the_size():
    s = Series("display")
    # 1 MB a million messages on 100 MB, after a warm-up that grew 20 MB.
    s.samples = [(m, 80_000_000 + m * 200, 1.0) for m in range(0, 100_000, 10_000)]
    s.samples += [(m, 100_000_000 + (m - 100_000), 1.0) for m in range(100_000, 3_100_000, 100_000)]
    percent, first, last = s.growth(100_000)
    assert percent == pytest.approx(1.0, rel=1e-6)
    assert (first, last) == (100_000, 3_000_000)


def test_a_restarted_process_is_fitted_from_its_restart_and_a_short_run_not_at_all():
    s = Series("broker", since=2_000_000)
    s.samples = [(m, 10_000_000, 0.5) for m in range(2_000_000, 2_150_000, 10_000)]
    assert s.growth(100_000) == (0.0, 2_100_000, 2_140_000)
    assert s.growth(200_000) is None  # nothing after its own warm-up
    assert s.cpu(100_000) == 0.5
