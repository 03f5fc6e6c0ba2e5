"""The bit-packed Life kernel against the plain uint8 version, bit for bit."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from node_agent.life import (
    advance,
    pack,
    pool,
    population,
    reference_step,
    step,
    step_strip,
    unpack,
    words_for,
)

GLIDER = np.array([[0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.uint8)


@st.composite
def boards(draw):
    height = draw(st.integers(1, 12))
    width = draw(st.sampled_from([1, 2, 3, 7, 63, 64, 65, 100, 128, 130]))
    return draw(arrays(np.uint8, (height, width), elements=st.integers(0, 1)))


@given(boards())
def test_pack_and_unpack_round_trip(cells):
    words = pack(cells)
    assert words.shape == (cells.shape[0], words_for(cells.shape[1]))
    assert np.array_equal(unpack(words, cells.shape[1]), cells)


@settings(max_examples=300, deadline=None)
@given(boards(), st.sampled_from(["torus", "dead"]), st.integers(1, 4))
def test_packed_generations_equal_the_reference(cells, wrap, generations):
    expected = cells
    for _ in range(generations):
        expected = reference_step(expected, wrap)
    got = unpack(step(pack(cells), cells.shape[1], wrap, generations), cells.shape[1])
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("size", [8, 64, 70])
def test_a_glider_comes_home_after_4n_generations_on_an_n_torus(size):
    cells = np.zeros((size, size), dtype=np.uint8)
    cells[1:4, 1:4] = GLIDER
    board = pack(cells)
    moved = step(board, size, "torus", 4)
    assert not np.array_equal(moved, board)  # it moved one cell diagonally
    assert np.array_equal(unpack(moved, size), np.roll(cells, (1, 1), (0, 1)))
    assert np.array_equal(step(board, size, "torus", 4 * size), board)


def test_a_glider_dies_against_a_dead_edge():
    cells = np.zeros((10, 10), dtype=np.uint8)
    cells[1:4, 1:4] = GLIDER
    end = unpack(step(pack(cells), 10, "dead", 60), 10)
    assert end.sum() == 4 and end[8:, 8:].sum() == 4  # a block stuck in the corner


@pytest.mark.parametrize("wrap", ["torus", "dead"])
@pytest.mark.parametrize("chunk_rows", [1, 4, 7, 256])
def test_a_board_done_in_chunks_is_the_same_board(wrap, chunk_rows):
    cells = (np.random.default_rng(3).random((30, 90)) < 0.4).astype(np.uint8)
    expected = cells
    for _ in range(5):
        expected = reference_step(expected, wrap)
    got = step(pack(cells), 90, wrap, 5, chunk_rows=chunk_rows)
    assert np.array_equal(unpack(got, 90), expected)


def test_strips_with_halo_rows_make_the_whole_board():
    rng = np.random.default_rng(7)
    cells = (rng.random((30, 200)) < 0.35).astype(np.uint8)
    board = pack(cells)
    parts = np.split(board, [7, 19])  # three strips of 7, 12 and 11 rows
    stepped = []
    for i, strip in enumerate(parts):
        above = parts[i - 1][-1]  # the neighbour's edge row: its halo
        below = parts[(i + 1) % len(parts)][0]
        stepped.append(step_strip(strip, above, below, 200, "torus"))
    assert np.array_equal(np.concatenate(stepped), step(board, 200, "torus"))


def test_bits_past_the_width_stay_clear():
    cells = np.ones((5, 70), dtype=np.uint8)
    board = step(pack(cells), 70, "torus", 3)
    assert not np.any(board[:, -1] >> np.uint64(6))


def _advance_in_strips(cells, wrap, cuts, depth, rounds):
    """The board cut at ``cuts`` into strips, each advanced from its neighbours'
    ``depth``-row halos, ``rounds`` times: what the distributed run does."""
    width = cells.shape[1]
    packed = pack(cells)
    strips = [packed[a:b] for a, b in itertools.pairwise(cuts)]
    n = len(strips)
    for _ in range(rounds):
        new = []
        for i, strip in enumerate(strips):
            up = strips[i - 1] if i > 0 or wrap == "torus" else None
            down = strips[(i + 1) % n] if i < n - 1 or wrap == "torus" else None
            new.append(advance(strip, None if up is None else up[-depth:],
                               None if down is None else down[:depth], depth, width, wrap,
                               chunk_rows=5))  # fmt: skip
        strips = new
    return unpack(np.concatenate(strips), width)


@st.composite
def strip_layouts(draw):
    depth = draw(st.integers(1, 4))
    n = draw(st.sampled_from([1, 2, 3, 5]))
    sizes = [draw(st.integers(depth, depth + 6)) for _ in range(n)]
    width = draw(st.integers(3, 130))
    cells = draw(arrays(np.uint8, (sum(sizes), width), elements=st.integers(0, 1)))
    cuts = [0, *np.cumsum(sizes).tolist()]
    return cells, cuts, depth


@settings(max_examples=200, deadline=None)
@given(strip_layouts(), st.sampled_from(["torus", "dead"]), st.integers(1, 3))
def test_strips_exchanging_k_deep_halos_every_k_generations_are_exact(layout, wrap, rounds):
    cells, cuts, depth = layout
    expected = cells
    for _ in range(rounds * depth):
        expected = reference_step(expected, wrap)
    assert (_advance_in_strips(cells, wrap, cuts, depth, rounds) == expected).all()


def test_advance_refuses_a_halo_of_the_wrong_depth():
    strip = pack(np.ones((8, 64), dtype=np.uint8))
    with pytest.raises(ValueError, match="above: 2 halo rows for 3 generations"):
        advance(strip, strip[:2], strip[:3], 3, 64)


def test_population_counts_live_cells():
    cells = np.random.default_rng(3).integers(0, 2, (33, 200), dtype=np.uint8)
    assert population(pack(cells)) == int(cells.sum())


def test_pooling_marks_a_square_alive_if_any_cell_is_and_aligns_to_the_board_grid():
    cells = np.zeros((10, 10), dtype=np.uint8)
    cells[0, 0] = cells[5, 9] = 1
    # rows 3..9 of the board, pooled 4 x 4: pooled rows 0 (board rows 0-3) to 2 (8-11)
    pooled = pool(pack(cells[3:]), 10, 3, 4)
    assert pooled.tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert pool(pack(cells), 10, 0, 1).tolist() == cells.tolist()
