"""The driver: runs compiled chunks until the step budget, convergence, a non-finite loss or Ctrl-C."""

from __future__ import annotations

import time
import warnings

import jax
import numpy as np

from provi.defaults import AVERAGE_MIN
from provi.engine.nonfinite import diagnose_nonfinite
from provi.engine.progress import Progress
from provi.engine.runner import FitState, Runner
from provi.engine.schedule import Convergence, Plan, StopInfo, average

__all__ = ["drive"]


def drive(runner: Runner, state: FitState, consts, data, steps: int, early: bool, progress: bool, objective,
          plan: Plan | None = None, restored=None):
    """Run chunks: `(state, losses, stop, averaged parameters or None)`.

    Convergence is checked, and averaging starts and stops, only at multiples of the window, so
    the same seed gives the same result whatever the chunk sizes were. A non-finite loss stops the
    fit at the last finite state, with a warning naming the sites; Ctrl-C returns what it had.
    """
    plan = Plan() if plan is None else plan
    losses: list[np.ndarray] = []
    sums: list = []  # (first step, sum of iterates, steps) per chunk
    watch = Convergence.for_steps(steps) if early else None
    block = watch.window if watch else max(1, steps - steps // 4)
    avg_from = None if watch else steps - steps // 4
    stop = StopInfo(reason="steps", steps=0)
    done, rate = 0, None
    if restored is not None:
        losses, sums, done = [np.asarray(restored.losses)], list(restored.sums), int(restored.state.step)
        if watch is not None:
            avg_from = restored.meta.get("avg_from")
            if restored.watch:
                watch = watch.restored(restored.watch)
        if restored.meta.get("stopped") == "converged":
            stop = StopInfo(reason="converged", steps=done)
    bar = Progress(steps, enabled=progress)
    bar.update(done, losses[-1] if losses else np.zeros(0))
    n = 0 if restored is not None and restored.meta.get("ended") else plan.chunk(done, steps, rate, block)
    chunk_data = plan.chunk_data(data, n)
    try:
        while done < steps and n > 0:
            t = time.perf_counter()
            start = state
            new, chunk_losses, acc, ran, bad = runner.run(state, consts, chunk_data, n)
            if plan.feeder is not None:  # the next block is built on the host while the device works
                following = plan.chunk(done + n, steps, None, block)
                next_data = plan.chunk_data(data, following)
            ran, bad = int(ran), int(bad)
            chunk = np.asarray(chunk_losses)[:ran]
            if bad >= 0:
                state, chunk = _last_finite(runner, start, consts, chunk_data, bad - int(start.step), chunk)
                losses.append(chunk[: int(state.step) - int(start.step)])
                done = int(state.step)
                stop = diagnose_nonfinite(runner, state, consts, plan.step_data(chunk_data, bad - int(start.step)), bad, objective)
                warnings.warn(stop.message, RuntimeWarning, stacklevel=4)
                bar.update(done, losses[-1])
                break
            state = new
            losses.append(chunk)
            if acc:
                sums.append((done, jax.device_get(acc), ran))
            done += ran
            dt = time.perf_counter() - t
            rate = ran / dt if dt > 0 else None
            if plan.feeder is None:
                following, next_data = plan.chunk(done, steps, rate, block), data
            bar.update(done, chunk)
            ended = False
            if watch is not None and done % watch.window == 0:
                if avg_from is None and watch.converged(np.concatenate(losses)):
                    stop = StopInfo(reason="converged", steps=done)
                    avg_from = done - 2 * watch.window  # the two stationary windows start the average
                    ended = not sums
                ended = ended or (avg_from is not None and done - avg_from >= AVERAGE_MIN)
            loop_meta = {"avg_from": avg_from, "stopped": stop.reason, "ended": ended}
            plan.after_chunk(state, consts, losses, sums, watch, done, ended or done >= steps, loop_meta)
            if ended:
                break
            n, chunk_data = following, next_data
    except KeyboardInterrupt:
        stop = StopInfo(reason="interrupted", steps=done)
        warnings.warn(f"fit interrupted at step {done}: returning the state after the last completed chunk", RuntimeWarning, stacklevel=4)
    finally:
        bar.close()
    stop.steps = done
    all_losses = np.concatenate(losses) if losses else np.zeros((0,))
    return state, all_losses, stop, average(sums, avg_from if avg_from is not None else done - done // 4)


def _last_finite(runner, start, consts, data, n_good, chunk):
    """Replay a chunk from its start for the steps before the first bad one (deterministic), then
    step back further while the parameters are not finite."""
    for n in range(max(n_good, 0), -1, -1):
        state = runner.run(start, consts, data, n)[0] if n > 0 else start
        if all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.params)):
            return state, chunk[:n]
    return start, chunk[:0]
