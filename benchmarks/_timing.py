"""Timing helpers shared by the benchmarks.

Every figure is a median over repeats (the machines these run on are small
and noisy).  Steady-state cost per step is measured as

    (median time of a long run - median time of a short run) / (long - short)

so that anything paid once per call (compilation, dispatch, setup, result
conversion) cancels; that per-call cost is reported separately as the
intercept.

The same difference is also taken in process CPU time (all threads).  On a
quiet machine the two agree for single-threaded work; on a shared, busy one a
short run often fits in one scheduler time slice while a long one is
time-shared with other processes, which inflates wall-clock figures and
leaves the CPU-time ones nearly untouched.
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
    times = {n_long: [], n_short: []}
    for _ in range(repeats):
        for n in (n_long, n_short):
            c0, t0 = time.process_time(), time.perf_counter()
            block(run(n))
            times[n].append((time.perf_counter() - t0, time.process_time() - c0))
    out = dict(n_long=n_long, n_short=n_short, repeats=repeats)
    for suffix, i in (("", 0), ("_cpu", 1)):
        t_long = statistics.median(t[i] for t in times[n_long])
        t_short = statistics.median(t[i] for t in times[n_short])
        step = (t_long - t_short) / (n_long - n_short)
        out.update({
            f"step{suffix}_s": step,
            f"intercept{suffix}_s": t_short - n_short * step,  # fixed cost per call
            f"t_long{suffix}_s": t_long,
            f"t_short{suffix}_s": t_short,
        })
    return out


def steady_step(run, n_long, n_short, repeats=3):
    """Seconds per step of ``run(n)``, both lengths warmed up first, never below 0 (the wall-clock
    ``step_s`` of ``steady_state``)."""
    run(n_short), run(n_long)  # warm up
    return max(steady_state(run, n_long, n_short, repeats)["step_s"], 0.0)


def paired_ratio(run_a, run_b, n_long, n_short, pairs=15):
    """Step cost of ``run_b`` over that of ``run_a``, measured in alternating pairs.

    Each pair times a then b back to back, each step cost from the fastest of two long and two
    short runs, so that the machine's slow spells (minutes long on small shared machines) hit both
    sides of a ratio alike. A pair in which either side's long run was not slower than its short
    one measured noise, not a step, and is dropped (counted in ``dropped``). Returns the median,
    min and max ratio over the pairs kept (None when none was).
    """
    def step(run):
        fastest = {n: min(timed(lambda: run(n))[0] for _ in range(2)) for n in (n_long, n_short)}
        return (fastest[n_long] - fastest[n_short]) / (n_long - n_short)

    ratios = []
    for _ in range(pairs):
        a, b = step(run_a), step(run_b)
        if a > 0 and b > 0:
            ratios.append(b / a)
    stats = dict(median=statistics.median(ratios), min=min(ratios), max=max(ratios)) if ratios else (
        dict(median=None, min=None, max=None))
    return dict(stats, pairs=pairs, dropped=pairs - len(ratios), n_long=n_long, n_short=n_short)
