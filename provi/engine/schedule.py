"""The schedule of a fit's loop: chunk sizes, convergence, iterate averaging, and why it stopped.

Convergence is checked, and averaging starts and stops, only at multiples of the convergence
window, so the same seed gives the same result whatever the chunk sizes were (the machine's
speed decides those).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from provi import defaults
from provi.engine import checkpoint as ckpt_io
from provi.engine.parallel import place

__all__ = ["StopInfo", "Convergence", "Plan", "chunk_size", "average", "averaged"]


@dataclasses.dataclass
class StopInfo:
    """Why and where a fit stopped: "steps", "converged", "interrupted" or "nonfinite"."""

    reason: str
    steps: int
    bad_step: int | None = None
    message: str = ""
    notes: list = dataclasses.field(default_factory=list)
    seconds: float = float("nan")


@dataclasses.dataclass
class Convergence:
    """Stop when the mean loss over the last `window` steps is no lower than over the window before,
    beyond `z` standard errors of the difference, at `patience` checks in a row."""

    window: int
    z: float = defaults.CONVERGENCE_Z
    patience: int = defaults.CONVERGENCE_PATIENCE
    calm: int = 0
    checked: int = 0

    @classmethod
    def for_steps(cls, steps: int) -> "Convergence":
        w = steps // defaults.CONVERGENCE_WINDOW_FRACTION
        return cls(window=int(min(defaults.CONVERGENCE_WINDOW_MAX, max(defaults.CONVERGENCE_WINDOW_MIN, w))))

    def converged(self, losses: np.ndarray) -> bool:
        w = self.window
        if len(losses) < 2 * w or len(losses) - self.checked < w:
            return False
        self.checked = len(losses)
        last, prev = losses[-w:], losses[-2 * w : -w]
        se = np.sqrt(np.var(prev) / w + np.var(last) / w)
        improving = np.mean(prev) - np.mean(last) > self.z * se
        self.calm = 0 if improving else self.calm + 1
        return self.calm >= self.patience

    def state(self) -> dict:
        """What a checkpoint keeps of the watch (the names are those of checkpoint format 1)."""
        return {"_calm": self.calm, "_checked": self.checked}

    def restored(self, saved: dict) -> "Convergence":
        return dataclasses.replace(self, calm=saved["_calm"], checked=saved["_checked"])


def chunk_size(done: int, total: int, rate, boundary: int | None) -> int:
    """Steps for the next chunk: about `CHUNK_SECONDS` of work, at most `CHUNK_MAX`, and never
    across a multiple of `boundary` (where convergence is checked and averaging starts)."""
    n = min(total - done, defaults.CHUNK_MIN if rate is None else int(max(defaults.CHUNK_MIN, defaults.CHUNK_SECONDS * rate)), defaults.CHUNK_MAX)
    if boundary:
        n = min(n, boundary - done % boundary)
    return max(1, n)


def averaged(params: dict) -> dict:
    """The parameters an iterate average is taken of: the model's and the guide's (not states such
    as an objective's running averages or an estimator's baselines)."""
    return {"model": params["model"], "guide": params["guide"]}


def average(sums, start: int):
    """The mean of the iterates of the chunks that begin at or after step `start` (the last chunk
    at least): the stationary windows of a converged fit, else the last quarter of the run.
    `sums` holds `(first step, sum of iterates, steps)` per chunk."""
    if not sums:
        return None
    chosen = [(acc, n) for first, acc, n in sums if first >= start] or [sums[-1][1:]]
    count = sum(n for _, n in chosen)
    total = chosen[0][0]
    for acc, _ in chosen[1:]:
        total = jax.tree.map(np.add, total, acc)
    return jax.tree.map(lambda x: x / count, total)


@dataclasses.dataclass
class Plan:
    """The chunk schedule, the data of each chunk (streamed batches) and checkpoints.

    Without batches or checkpoints, chunk sizes adapt to the measured speed (`chunk_size`); with
    either, chunks have `FIXED_CHUNK` steps (streamed blocks have a fixed shape; checkpoints come
    every `every` chunks), cut short at the same boundaries. The result does not depend on the
    chunk sizes, so a resumed fit equals an uninterrupted one.
    """

    feeder: Any = None
    mesh: Any = None
    lengths: Any = ()
    n_batch: int = 0
    path: Any = None
    every: int = defaults.CHECKPOINT_EVERY
    resume: Any = None
    meta: dict = dataclasses.field(default_factory=dict)
    count: int = 0

    @classmethod
    def make(cls, feeder, mesh, lengths, data, n_batch, path, every, resume, seed, steps):
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"checkpoint_every must be a positive number of chunks, got {every!r}")
        shapes = [list(np.shape(x)) for x in data]
        return cls(feeder, mesh, lengths, n_batch, path, int(every), resume, {"seed": int(seed), "steps": int(steps), "data_shapes": shapes})

    @property
    def fixed(self) -> bool:
        return self.feeder is not None or self.path is not None or self.resume is not None

    def chunk(self, done, total, rate, boundary) -> int:
        if done >= total:
            return 0
        if not self.fixed:
            return chunk_size(done, total, rate, boundary)
        n = min(defaults.FIXED_CHUNK, total - done)
        return max(1, min(n, boundary - done % boundary) if boundary else n)

    def chunk_data(self, data, n):
        """The data of a chunk of `n` steps: with batches, the next block of `n` batches in front."""
        if self.feeder is None or n <= 0:
            return data
        block = place(self.feeder.block(n, defaults.FIXED_CHUNK), self.mesh, self.lengths, axis=1)
        return block + list(data[self.n_batch :])

    def step_data(self, chunk_data, i):
        """The data of step `i` of a chunk."""
        if self.feeder is None:
            return chunk_data
        return [x[i] for x in chunk_data[: self.n_batch]] + list(chunk_data[self.n_batch :])

    def after_chunk(self, state, consts, losses, sums, watch, done, final, loop_meta):
        if self.path is None or jax.process_index() != 0:
            return
        self.count += 1
        if final or self.count % self.every == 0:
            meta = {**self.meta, **loop_meta, "step": int(done)}
            w = watch.state() if watch is not None else None
            ckpt_io.save(self.path, ckpt_io.Checkpoint(state, consts, np.concatenate(losses), sums, w, meta))

    def restore(self, state, consts):
        c = ckpt_io.load(self.resume, state, consts, averaged(state.params))
        want, got = self.meta, c.meta
        for k in ("seed", "data_shapes"):
            if got.get(k) != want.get(k):
                raise ValueError(f"resume: the checkpoint's {k} ({got.get(k)}) differs from this fit's ({want.get(k)})")
        return c
