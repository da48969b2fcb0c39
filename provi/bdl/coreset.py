"""Coresets for variational continual learning (VCL, Nguyen et al. 2018): a few points of each
task kept aside, so that the posterior carried from task to task can be refreshed on them before
predicting.

- `random_coreset(key, n, size)`: `size` of `n` indices drawn without replacement.
- `k_center(x, size, first=0)`: VCL's greedy k-centre selection: start at point `first`, then
  repeatedly take the point farthest (Euclidean) from the points chosen so far.
- `split(indices, *arrays)` and `union(*parts)`: a task's arrays split into coreset and rest,
  and the coresets of several tasks joined.

Each selection returns `(chosen, rest)`: the chosen indices (in the order chosen) and the other
indices (ascending); together they are `0..n-1`, each once. The selections are exact jax
functions of their inputs (the same key or the same points give the same indices).

    >>> import jax, jax.numpy as jnp
    >>> x = jnp.array([[0.0], [1.0], [10.0], [4.0], [6.0]])
    >>> chosen, rest = k_center(x, 3)
    >>> chosen.tolist(), rest.tolist()   # 0, then the farthest from 0 (10), then from both (4 or 6: 4, first)
    ([0, 2, 3], [1, 4])
    >>> (cx,), (rx,) = split((chosen, rest), x)
    >>> cx[:, 0].tolist(), rx[:, 0].tolist()
    ([0.0, 10.0, 4.0], [1.0, 6.0])
    >>> chosen, rest = random_coreset(jax.random.key(0), 5, 2)
    >>> sorted(chosen.tolist() + rest.tolist())
    [0, 1, 2, 3, 4]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["random_coreset", "k_center", "split", "union"]


def _check(n: int, size: int):
    if not 0 <= size <= n:
        raise ValueError(f"coreset size must lie in 0..{n} (the number of points), got {size}")


def _rest(chosen: jax.Array, n: int) -> jax.Array:
    taken = jnp.zeros(n, bool).at[chosen].set(True)
    return jnp.nonzero(~taken, size=n - chosen.shape[0])[0]


def random_coreset(key: jax.Array, n: int, size: int) -> tuple[jax.Array, jax.Array]:
    """`size` indices of `0..n-1` drawn uniformly without replacement (ascending), and the rest.

    >>> chosen, rest = random_coreset(jax.random.key(1), 10, 3)
    >>> chosen.shape, rest.shape
    ((3,), (7,))
    """
    _check(n, size)
    chosen = jnp.sort(jax.random.permutation(key, n)[:size])
    return chosen, _rest(chosen, n)


def k_center(x: jax.Array, size: int, first: int = 0) -> tuple[jax.Array, jax.Array]:
    """Greedy k-centre selection of `size` rows of `x` (shape (n, ...), flattened per row): the
    first chosen is row `first`; each next is the row whose distance to its nearest chosen row is
    largest (the lowest index among ties). Returns the chosen indices in the order chosen and the
    rest (ascending).

    >>> k_center(jnp.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]]), 2, first=2)[0].tolist()
    [2, 1]
    """
    x = jnp.reshape(jnp.asarray(x), (jnp.shape(x)[0], -1))
    n = x.shape[0]
    _check(n, size)
    if size == 0:
        return jnp.zeros((0,), jnp.int32), jnp.arange(n, dtype=jnp.int32)
    if not 0 <= first < n:
        raise ValueError(f"k_center: first must index a row of x (0..{n - 1}), got {first}")

    def sq_dist(i):
        return jnp.sum((x - x[i]) ** 2, axis=1)

    def body(j, carry):
        chosen, nearest = carry
        i = jnp.argmax(nearest).astype(jnp.int32)
        return chosen.at[j].set(i), jnp.minimum(nearest, sq_dist(i))

    chosen = jnp.zeros(size, jnp.int32).at[0].set(first)
    chosen, _ = jax.lax.fori_loop(1, size, body, (chosen, sq_dist(first)))
    return chosen, _rest(chosen, n)


def split(indices: tuple[jax.Array, jax.Array], *arrays) -> tuple[tuple, tuple]:
    """`(arrays at chosen, arrays at rest)` for `indices = (chosen, rest)` from a selection: each
    array indexed along its first axis."""
    chosen, rest = indices
    return tuple(a[chosen] for a in arrays), tuple(a[rest] for a in arrays)


def union(*parts: tuple) -> tuple:
    """The tuples of arrays `parts` (e.g. the coresets of tasks 1..t) joined position by position
    along the first axis.

    >>> union((jnp.zeros(2), jnp.ones(2)), (jnp.zeros(1), jnp.ones(1)))[1].tolist()
    [1.0, 1.0, 1.0]
    """
    if not parts:
        raise ValueError("union needs at least one tuple of arrays")
    return tuple(jnp.concatenate(column) for column in zip(*parts))
