"""provi.engine.schedule: chunk sizes, convergence and averaging."""

import numpy as np

from provi import defaults
from provi.engine.schedule import Convergence, average, chunk_size


def test_chunks_never_cross_a_window_boundary():
    assert chunk_size(0, 20_000, None, 1000) == defaults.CHUNK_MIN
    assert chunk_size(900, 20_000, 1e6, 1000) == 100  # stops at the boundary 1000
    assert chunk_size(1000, 20_000, 1e9, None) == defaults.CHUNK_MAX
    assert chunk_size(19_990, 20_000, 1e9, None) == 10


def test_convergence_on_a_flat_and_a_falling_loss():
    rng = np.random.default_rng(0)
    flat = rng.normal(size=4000)
    w = Convergence(window=500)
    assert not w.converged(flat[:1000])  # first check: one calm window
    assert w.converged(flat[:1500]) and w.calm == 2
    falling = np.linspace(10, 0, 4000) + 0.01 * rng.normal(size=4000)
    w = Convergence(window=500)
    assert not any(w.converged(falling[: 500 * k]) for k in range(2, 9))
    assert Convergence.for_steps(20_000).window == 1000
    assert Convergence.for_steps(1000).window == defaults.CONVERGENCE_WINDOW_MIN


def test_average_of_the_chunks_from_a_step():
    sums = [(0, {"x": np.array(10.0)}, 10), (10, {"x": np.array(30.0)}, 10), (20, {"x": np.array(50.0)}, 10)]
    assert float(average(sums, 10)["x"]) == 4.0  # (30 + 50) / 20
    assert float(average(sums, 25)["x"]) == 5.0  # the last chunk at least
    assert average([], 0) is None
