"""The bit-packed Life kernel against the plain uint8 version, bit for bit."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from piswarm.life import (
    advance,
    finish_round,
    inner_rows,
    move_boundaries,
    pack,
    pool,
    population,
    reference_step,
    step,
    step_strip,
    unpack,
    words_for,
)
from piswarm.protocol.life import halo_rows

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
            new.append(
                advance(
                    strip,
                    None if up is None else up[-depth:],
                    None if down is None else down[:depth],
                    depth,
                    width,
                    wrap,
                    chunk_rows=5,
                )
            )
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


def _balance_in_strips(cells, wrap, cuts, depth, rounds, moves):
    """Like :func:`_advance_in_strips`, but before each round every boundary inside the
    board moves by the next of ``moves`` (clamped to what the halos hold, as
    boundary_shift clamps): each strip sends ``halo_rows`` rows and cuts its new edges
    with move_boundaries, as a strip process does."""
    width = cells.shape[1]
    strips = [pack(cells)[a:b] for a, b in itertools.pairwise(cuts)]
    n, torus = len(strips), wrap == "torus"
    moves = iter(moves)
    for _ in range(rounds):
        sent = [halo_rows(depth, len(s)) for s in strips]
        shift = []  # boundary i lies between strip i and strip i + 1
        for i in range(n - 1):
            lo = -min(sent[i] - depth, (len(strips[i]) - depth) // 2)
            hi = min(sent[i + 1] - depth, (len(strips[i + 1]) - depth) // 2)
            shift.append(max(lo, min(hi, next(moves, 0))))
        new = []
        for i, strip in enumerate(strips):
            up = strips[i - 1] if i > 0 or torus else None
            down = strips[(i + 1) % n] if i < n - 1 or torus else None
            above = None if up is None else up[-sent[(i - 1) % n] :]
            below = None if down is None else down[: sent[(i + 1) % n]]
            top = shift[i - 1] if i > 0 else 0
            bottom = shift[i] if i < n - 1 else 0
            rows, above, below = move_boundaries(strip, above, below, top, bottom, depth)
            assert len(rows) == len(strip) - top + bottom
            new.append(advance(rows, above, below, depth, width, wrap, chunk_rows=3))
        strips = new
    return unpack(np.concatenate(strips), width), [len(s) for s in strips]


@settings(max_examples=200, deadline=None)
@given(
    strip_layouts(),
    st.sampled_from(["torus", "dead"]),
    st.integers(1, 4),
    st.lists(st.integers(-20, 20), max_size=20),
)
def test_strips_whose_boundaries_move_between_rounds_are_exact(layout, wrap, rounds, moves):
    cells, cuts, depth = layout
    expected = cells
    for _ in range(rounds * depth):
        expected = reference_step(expected, wrap)
    got, heights = _balance_in_strips(cells, wrap, cuts, depth, rounds, moves)
    assert (got == expected).all()
    assert sum(heights) == cells.shape[0] and min(heights) >= depth


def test_boundaries_move_as_asked():
    rows = np.arange(10, dtype=np.uint64).reshape(10, 1)
    above = np.arange(100, 106, dtype=np.uint64).reshape(6, 1)
    below = np.arange(200, 206, dtype=np.uint64).reshape(6, 1)
    # Top edge up 2 (rows 104, 105 join), bottom edge up 3 (rows 7-9 leave).
    got, up, down = move_boundaries(rows, above, below, -2, -3, 4)
    assert got.ravel().tolist() == [104, 105, 0, 1, 2, 3, 4, 5, 6]
    assert up.ravel().tolist() == [100, 101, 102, 103]
    assert down.ravel().tolist() == [7, 8, 9, 200]
    with pytest.raises(ValueError, match="not 4 rows beyond"):
        move_boundaries(rows, above, below, -3, 0, 4)
    with pytest.raises(ValueError, match="nothing beyond"):
        move_boundaries(rows, None, below, 1, 0, 4)
    with pytest.raises(ValueError, match="leaves no rows"):
        move_boundaries(rows, above, below, 6, -4, 4)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 24),
    st.integers(3, 130),
    st.sampled_from(["torus", "dead"]),
    st.booleans(),
    st.booleans(),
    st.data(),
)
def test_inside_first_then_the_edges_is_the_same_round(
    k, extra, width, wrap, has_above, has_below, data
):
    """What a strip computes while the halos travel, then finishes, equals the round done
    at once after they arrived, boundaries moved or not."""
    n = 2 * k + extra
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    rows, above, below = (pack(rng.random((h, width)) < 0.4) for h in (n, 3 * k, 3 * k))
    above = above[: data.draw(st.integers(k, 3 * k))] if has_above else None
    below = below[: data.draw(st.integers(k, 3 * k))] if has_below else None
    spare = min(2 * k, (n - k) // 2)  # what boundary_shift lets each edge take at most
    top = 0 if above is None else data.draw(st.integers(k - len(above), spare))
    bottom = 0 if below is None else data.draw(st.integers(-spare, len(below) - k))
    at_once = advance(*move_boundaries(rows, above, below, top, bottom, k), k, width, wrap)
    split = finish_round(
        inner_rows(rows, k, width, wrap), rows, above, below, top, bottom, k, width, wrap
    )
    assert np.array_equal(split, at_once)


def test_a_strip_too_thin_for_an_inside_is_refused():
    with pytest.raises(ValueError, match="no inside"):
        inner_rows(pack(np.ones((8, 64), dtype=np.uint8)), 4, 64)
