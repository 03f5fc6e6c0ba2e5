"""RLE patterns: parse, write, errors that name line and column, and the bundled ones
behave as their names say."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from head.patterns import bundled, read_pattern
from piswarm import life
from piswarm.errors import ConfigError
from piswarm.rle import RleError, format_rle, parse_rle

GLIDER = "#N Glider\n#C a comment\nx = 3, y = 3, rule = B3/S23\nbo$2bo$3o!\n"


def test_a_glider_parses_to_its_cells():
    pattern = parse_rle(GLIDER)
    assert pattern.name == "Glider" and pattern.comments == ("a comment",)
    assert pattern.cells.tolist() == [[0, 1, 0], [0, 0, 1], [1, 1, 1]]


def test_counts_blank_rows_line_breaks_and_alternative_cell_letters():
    text = "x = 5, y = 4\n2o.A\nb3$\n5o!"
    cells = parse_rle(text).cells
    assert cells.tolist() == [[1, 1, 0, 1, 0], [0] * 5, [0] * 5, [1] * 5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no header line"),
        ("#C only comments\n", "no header line"),
        ("x = 3; y = 3\nbo!", "line 1, column 1: expected 'x = <width>"),
        ("#N n\nx = 3, y = 3, rule = B36/S23\nbo!", "line 2, column 22: rule 'B36/S23' is not"),
        ("x = 3, y = 3\nbo$2bz$3o!", "line 2, column 6: unexpected 'z'"),
        ("x = 3, y = 3\nbo$4o!", "line 2, column 5: cells past the 3 x 3"),
        ("x = 3, y = 2\nbo$bo$o!", "line 2, column 7: cells past the 3 x 2"),
        ("x = 3, y = 3\nbo$2bo$3o", "does not end with '!'"),
        ("x = 3, y = 3\nbo$2 bo!", "line 2, column 5: a run count must be followed"),
        ("x = 100000, y = 100000\n!", "too large a pattern"),
    ],
)
def test_bad_rle_is_refused_naming_the_line_and_column(text, message):
    with pytest.raises(RleError, match=r"^gun\.rle") as err:
        parse_rle(text, "gun.rle")
    assert message in str(err.value)


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 90)), elements=st.integers(0, 1))
)
def test_writing_and_reading_back_gives_the_same_cells(cells):
    text = format_rle(cells, "random", ("made by hypothesis",))
    assert all(len(line) <= 70 for line in text.splitlines())
    assert parse_rle(text).cells.tolist() == cells.tolist()


def test_the_bundled_patterns_are_there_and_unknown_names_are_explained(tmp_path):
    assert bundled() == ["acorn", "breeder1", "glider", "gosper-glider-gun", "r-pentomino"]
    text, source = read_pattern("acorn")
    assert parse_rle(text, source).name == "Acorn"
    mine = tmp_path / "mine.rle"
    mine.write_text(GLIDER)
    assert read_pattern(str(mine)) == (GLIDER, str(mine))
    with pytest.raises(ConfigError, match="no such file, and not a bundled pattern"):
        read_pattern("gosper-gun")


def _on_board(name: str, height: int, width: int, y: int, x: int) -> np.ndarray:
    cells = parse_rle(*read_pattern(name)).cells
    board = np.zeros((height, width), dtype=np.uint8)
    board[y : y + cells.shape[0], x : x + cells.shape[1]] = cells
    return life.pack(board)


def _population(packed: np.ndarray, width: int) -> int:
    return int(life.unpack(packed, width).sum())


def test_the_glider_moves_one_cell_diagonally_every_four_generations():
    start = _on_board("glider", 16, 16, 2, 2)
    moved = life.step(start, 16, "dead", 4)
    assert (life.unpack(moved, 16) == np.roll(life.unpack(start, 16), (1, 1), (0, 1))).all()


def test_the_gun_fires_a_glider_every_thirty_generations():
    board = _on_board("gosper-glider-gun", 64, 128, 2, 2)
    assert _population(board, 128) == 36
    assert _population(life.step(board, 128, "dead", 30), 128) == 36 + 5
    assert _population(life.step(board, 128, "dead", 60), 128) == 36 + 10


def test_the_r_pentomino_settles_at_generation_1103_with_116_cells():
    board = _on_board("r-pentomino", 768, 768, 382, 382)  # its gliders stay on the board
    at_1103 = life.step(board, 768, "dead", 1103)
    assert _population(at_1103, 768) == 116
    before, after = life.step(board, 768, "dead", 1101), life.step(at_1103, 768, "dead", 2)
    assert not (life.unpack(before, 768) == life.unpack(at_1103, 768)).all()
    assert _population(after, 768) == 116


def test_the_breeder_grows():
    board = _on_board("breeder1", 512, 1536, 80, 20)
    assert _population(board, 1536) == 4054
    assert _population(life.step(board, 1536, "dead", 1000), 1536) > 6000
