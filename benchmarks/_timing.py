"""Timing helpers shared by the benchmarks.

Every figure is a median over repeats (the machines these run on are small
and noisy).  Steady-state cost per step is measured as

    (median time of a long run - median time of a short run) / (long - short)

so that anything paid once per call (compilation, dispatch, setup, result
conversion) cancels; that per-call cost is reported separately as the
intercept.
"""

import statistics
import time

import jax


def block(x):
    """Wait for every JAX array in the pytree ``x``; other leaves are ignored."""
    for leaf in jax.tree_util.tree_leaves(x):
        if isinstance(leaf, jax.Array):
            leaf.block_until_ready()
    return x


def timed(fn):
    """``(seconds, result)`` of one call of ``fn()``, its JAX results waited for."""
    t0 = time.perf_counter()
    result = block(fn())
    return time.perf_counter() - t0, result


def median_timed(fn, repeats):
    """``(median seconds, last result)`` over ``repeats`` calls of ``fn()``."""
    times = []
    for _ in range(repeats):
        t, result = timed(fn)
        times.append(t)
    return statistics.median(times), result


def steady_state(run, n_long, n_short, repeats):
    """Per-step cost of ``run(n)`` (which performs ``n`` steps).

    Both lengths must already be warmed up (compiled) by the caller where the
    tool allows it.  Long and short runs are interleaved so that slow drifts
    of the machine hit both alike.
    """
    longs, shorts = [], []
    for _ in range(repeats):
        longs.append(timed(lambda: run(n_long))[0])
        shorts.append(timed(lambda: run(n_short))[0])
    t_long, t_short = statistics.median(longs), statistics.median(shorts)
    step = (t_long - t_short) / (n_long - n_short)
    return {
        "step_s": step,
        "intercept_s": t_short - n_short * step,  # fixed cost per call
        "t_long_s": t_long,
        "t_short_s": t_short,
        "n_long": n_long,
        "n_short": n_short,
        "repeats": repeats,
    }
