"""Cutting a board into strips by the nodes' speeds (pure)."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from head.coordinator.life_board import split_rows


@given(height=st.integers(1, 5000), data=st.data())
def test_runs_cover_the_board_in_order_each_at_least_the_minimum(height, data):
    min_rows = data.draw(st.integers(1, max(1, min(64, height))))
    count = data.draw(st.integers(1, max(1, min(40, height // min_rows))))
    weights = data.draw(st.lists(st.floats(0.01, 100), min_size=count, max_size=count))
    runs = split_rows(height, weights, min_rows)
    assert len(runs) == count and runs[0][0] == 0
    assert all(rows >= min_rows for _, rows in runs)
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(runs))
    assert runs[-1][0] + runs[-1][1] == height
    total = sum(weights)
    for (_, rows), w in zip(runs, weights, strict=True):
        share = height * w / total
        assert rows <= max(min_rows, share + 1) + count * min_rows  # never far above


def test_equal_weights_cut_evenly_and_speeds_cut_in_proportion():
    assert split_rows(10, [1, 1, 1]) == [(0, 4), (4, 3), (7, 3)]
    assert split_rows(400, [3e9, 1e9], 8) == [(0, 300), (300, 100)]
    assert split_rows(100, [1000, 1], 8) == [(0, 92), (92, 8)]  # the slow node keeps 8


@pytest.mark.parametrize(
    ("height", "weights", "min_rows"), [(10, [], 1), (10, [1, 1], 6), (10, [1, 0], 1)]
)
def test_impossible_cuts_are_refused(height, weights, min_rows):
    with pytest.raises(ValueError, match="cannot cut"):
        split_rows(height, weights, min_rows)
