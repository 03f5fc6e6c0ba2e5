"""Life checkpoints in SQLite: pieces become a board only when they tile it row for row."""

import numpy as np
import pytest

from head.coordinator.life_board import initial_board
from head.coordinator.lifestore import LifeStore, Strip
from piswarm.protocol import ProtocolError
from piswarm.protocol.life import LifeRequest


@pytest.fixture
def store(tmp_path):
    opened = LifeStore(tmp_path / "jobs.sqlite").open()
    yield opened
    opened.close()


def piece(rows: int, fill: int) -> bytes:
    return np.full((rows, 2), fill, dtype="<u8").tobytes()


def test_pieces_cut_anywhere_make_the_board_once_they_tile_it(store):
    request = LifeRequest(width=100, height=64, gens=50, density=0.3)
    job, _ = store.submit(request, initial_board(request), now=1.0)
    epoch = store.new_epoch(job, [Strip(0, "pi-1", 0, 32), Strip(1, "pi-2", 32, 32)], 0)
    # The strips moved their boundary from row 32 to row 30 while they ran.
    assert store.add_piece(job, epoch, 10, 0, 0, piece(30, 1), 2) is None
    board = store.add_piece(job, epoch, 10, 1, 30, piece(34, 2), 2)
    assert board is not None and board.gen == 10
    assert board.cells[:30].tolist() == [[1, 1]] * 30 and board.cells[30:].tolist() == [[2, 2]] * 34


def test_pieces_that_leave_a_gap_are_dropped_and_the_last_board_stays(store):
    request = LifeRequest(width=100, height=64, gens=50, density=0.3)
    job, _ = store.submit(request, initial_board(request), now=1.0)
    epoch = store.new_epoch(job, [Strip(0, "pi-1", 0, 32), Strip(1, "pi-2", 32, 32)], 0)
    store.add_piece(job, epoch, 10, 0, 0, piece(30, 1), 2)
    with pytest.raises(ProtocolError, match="rows 0 to 30 of 64 line up"):
        store.add_piece(job, epoch, 10, 1, 32, piece(32, 2), 2)
    assert store.summary(job)[0] == 0  # the board of generation 0 is still the latest
    # Nothing of generation 10 is left over to be counted with later pieces.
    assert store.add_piece(job, epoch, 10, 1, 30, piece(34, 2), 2) is None


def test_a_jobs_kind_is_the_stores_not_its_ids_first_letter(tmp_path):
    from head.coordinator.jobstore import JobStore
    from piswarm.protocol.jobs import PrimesRequest

    path = tmp_path / "jobs.sqlite"
    lives, primes = LifeStore(path).open(), JobStore(path).open()
    try:
        life_job, _ = lives.submit(
            LifeRequest(width=64, height=16, gens=5, density=0.3),
            initial_board(LifeRequest(width=64, height=16, gens=5, density=0.3)),
            now=1.0,
        )
        prime_job, _ = primes.submit(PrimesRequest(start=1, end=10**5, block_size=10**4), now=1.0)
        assert lives.has(life_job) and not lives.has(prime_job)
        # An id is a name: one that merely looks like a Life job's is not one.
        assert not lives.has("l" + prime_job[1:]) and not lives.has("")
    finally:
        lives.close()
        primes.close()


def test_ended_jobs_beyond_the_latest_are_found_oldest_first_from_a_watermark(tmp_path):
    from head.coordinator.jobstore import JobStore
    from piswarm.protocol.jobs import PrimesRequest

    path = tmp_path / "jobs.sqlite"
    lives, primes = LifeStore(path).open(), JobStore(path).open()
    try:
        request = LifeRequest(width=64, height=16, gens=5, density=0.3)
        life_jobs, prime_jobs = [], []
        for n in range(4):
            job, _ = lives.submit(request, initial_board(request), now=1.0)
            lives.finish(job, "cancelled", 10.0 * (n + 1))
            life_jobs.append(job)
            job, _ = primes.submit(PrimesRequest(start=1, end=10**5, block_size=10**4), now=1.0)
            primes.cancel(job, 10.0 * (n + 1))
            prime_jobs.append(job)
        running, _ = lives.submit(request, initial_board(request), now=50.0)  # not ended
        for store, made in ((lives, life_jobs), (primes, prime_jobs)):
            assert store.ended_beyond(2, 0.0, 10) == [(made[0], 10.0), (made[1], 20.0)]
            assert store.ended_beyond(2, 10.0, 10) == [(made[1], 20.0)]  # past the watermark
            assert store.ended_beyond(2, 0.0, 1) == [(made[0], 10.0)]
            assert store.ended_beyond(4, 0.0, 10) == []
        assert running not in [j for j, _ in lives.ended_beyond(0, 0.0, 10)]
    finally:
        lives.close()
        primes.close()
