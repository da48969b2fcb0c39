"""Streaming data that does not fit on the device: minibatches fed into the compiled loop by blocks.

`provi.fit(model, *args, batches=loader, **kwargs)` fits `model(*batch, *args, **kwargs)` where
`batch` is each item of `loader`: a tuple of arrays (the model's leading positional arguments; a
single array counts as a 1-tuple), every item with the same shapes and dtypes. The model scales
its likelihood with a plate of the full data size and the batch size,
`numpyro.plate("data", N, subsample_size=len(x))`, exactly as in NumPyro's minibatch SVI.

The loop stays one compiled program: before each chunk of n steps, provi stacks the next n
batches into a block (each leaf gets a leading step axis, shape (n, B, ...)), moves it to the
device(s) (split over the batch axis with `devices=`), and the chunk's step i reads row i. The next
block is assembled on the host while the device runs the current chunk. Chunks have a fixed
length (`provi.defaults.FIXED_CHUNK`, 500 steps), so at most that many batches are on the device at once.

`loader` may be any iterable; when it is exhausted provi iterates it again (a new epoch). To resume
a fit (`resume=`) provi needs the batches from the checkpoint's step on: it calls `loader.at(step)`
when the loader has that method (as `Batches` does) and otherwise skips `step` batches.
`Batches` is a ready loader over arrays held on the host (numpy arrays or `numpy.memmap` files
larger than memory), reshuffled each epoch from its seed.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np

__all__ = ["Batches", "Feeder"]


class Batches:
    """Shuffled minibatches of host arrays: item k is `tuple(a[idx_k] for a in arrays)`.

    Each epoch is a fresh permutation drawn from `(seed, epoch)`; an epoch has `len(arrays[0]) //
    batch_size` batches (the remainder is left out of that epoch). Iteration never ends (provi's
    `steps` decides); `at(step)` starts from batch `step`, which makes resumed fits exact.
    """

    def __init__(self, *arrays, batch_size: int, seed: int = 0, shuffle: bool = True):
        if not arrays:
            raise ValueError("Batches needs at least one array")
        n = len(arrays[0])
        if any(len(a) != n for a in arrays):
            raise ValueError(f"Batches: arrays differ in length: {[len(a) for a in arrays]}")
        if not 1 <= batch_size <= n:
            raise ValueError(f"batch_size must be between 1 and the data length {n}, got {batch_size}")
        self.arrays, self.n, self.batch_size, self.seed, self.shuffle = arrays, n, int(batch_size), int(seed), shuffle
        self.per_epoch = n // self.batch_size

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def at(self, step: int) -> Iterator[tuple]:
        """Batches from batch number `step` on."""
        epoch, k = divmod(int(step), self.per_epoch)
        while True:
            order = self._order(epoch)
            for j in range(k, self.per_epoch):
                idx = np.sort(order[j * self.batch_size : (j + 1) * self.batch_size])  # sorted: faster reads from memmaps
                yield tuple(np.asarray(a[idx]) for a in self.arrays)
            epoch, k = epoch + 1, 0

    def __iter__(self) -> Iterator[tuple]:
        return self.at(0)


def as_batch(item: Any) -> tuple:
    """A loader item as a tuple of arrays."""
    if isinstance(item, tuple):
        return item
    if isinstance(item, list):
        return tuple(item)
    if isinstance(item, dict):
        raise TypeError("provi.fit(batches=...): a loader yields tuples of arrays (the model's leading positional arguments), not dicts")
    return (item,)


class Feeder:
    """Pulls batches from a loader and stacks them into blocks of `size` steps (padded by repeating
    the last batch; the chunk runs only the real steps)."""

    def __init__(self, loader: Iterable, start: int = 0):
        self.loader = loader
        self.it = self._iter(start)

    def _iter(self, start: int) -> Iterator[tuple]:
        if hasattr(self.loader, "at"):
            yield from (as_batch(b) for b in self.loader.at(start))
            return
        skip, first = start, True
        while True:
            got = False
            for item in self.loader:
                got = True
                if skip:
                    skip -= 1
                    continue
                yield as_batch(item)
            if not got:
                raise ValueError("provi.fit(batches=...): the loader yielded no batches" if first else "the loader stopped yielding batches")
            first = False

    def first(self) -> tuple:
        """The first batch (consumed: the fit starts with it), for tracing the model."""
        item = next(self.it)
        self.it = _prepend(item, self.it)
        return item

    def block(self, n: int, size: int) -> list[np.ndarray]:
        """The next `n` batches, stacked and padded to `size` rows: one array per batch leaf."""
        rows = [next(self.it) for _ in range(n)]
        rows += [rows[-1]] * (size - n)
        return [np.stack([np.asarray(r[j]) for r in rows]) for j in range(len(rows[0]))]


def _prepend(item, it):
    yield item
    yield from it
