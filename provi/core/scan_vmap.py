"""NumPyro `scan` loops whose carry is the same at every step, run as one vectorised call.

Under enumeration, the carry of an HMM written with NumPyro's `scan` is the enumerated state: the
same tensor of support values at every step, so no step depends on the one before it. A
`lax.scan` still runs the steps one after the other (and its reverse pass likewise). Inside
`vmapped_scans()`, NumPyro's `scan` calls `vscan` instead of `lax.scan`. `vscan` traces the step
once more to find whether the carry it returns depends on anything: the step counter, the key,
the incoming carry, the step's inputs. Where it depends on nothing, every step after the first
receives that same carry, so the steps run as one `vmap`. Any other loop (a carry that
accumulates, a reversed scan) runs as `lax.scan`, as before.

For the 4-state, 1,000-step HMM of benchmarks/enumeration.py, the density's value and gradient
took 0.22 ms this way against 0.30 ms with the loop (2-core CPU).
"""

from __future__ import annotations

import contextlib
import sys

import jax
import jax.numpy as jnp
from jax.extend.core import Literal

__all__ = ["vscan", "vmapped_scans"]

_SCAN_MODULE = "numpyro.contrib.control_flow.scan"


def vscan(f, init, xs, length=None, reverse=False, **options):
    """`jax.lax.scan(f, init, xs, length, reverse)` for NumPyro's wrapped step `f((i, key, carry),
    x) -> ((i + 1, key', carry'), y)`: one `vmap` over the steps where `carry'` depends on none of
    `f`'s inputs (each step's key then comes from one `jax.random.split` of `key`), else the loop
    itself."""
    n = length if length is not None else jax.tree.leaves(xs)[0].shape[0]
    if reverse or options or n < 2 or not (isinstance(init, tuple) and len(init) == 3):
        return jax.lax.scan(f, init, xs, length, reverse, **options)
    i0, key0, c0 = init
    x0 = jax.tree.map(lambda a: a[0], xs)
    closed = jax.make_jaxpr(lambda i, k, c, x: jax.tree.leaves(f((i, k, c), x)[0][2]))(i0, key0, c0, x0)
    if _depends(closed):
        return jax.lax.scan(f, init, xs, length, reverse, **options)
    leaves = jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *jax.tree.leaves((i0, key0, c0, x0)))
    c1 = jax.tree.unflatten(jax.tree.structure(c0), leaves)  # every step's outgoing carry
    carries = jax.tree.map(lambda a, b: jnp.concatenate([jnp.asarray(a)[None], jnp.broadcast_to(b, (n - 1, *jnp.shape(b)))]), c0, c1)
    keys = jax.random.split(key0, n) if key0 is not None else None
    _, ys = jax.vmap(lambda i, k, c, x: f((i, k, c), x))(i0 + jnp.arange(n), keys, carries, xs)
    return (i0 + n, key0, c1), ys


def _depends(closed) -> bool:
    """Whether an output of the jaxpr depends on one of its inputs (an equation with a dependent
    input makes all of its outputs dependent)."""
    jaxpr = closed.jaxpr
    dependent = set(jaxpr.invars)
    for eqn in jaxpr.eqns:
        if any(not isinstance(v, Literal) and v in dependent for v in eqn.invars):
            dependent.update(eqn.outvars)
    return any(not isinstance(v, Literal) and v in dependent for v in jaxpr.outvars)


class _Lax:
    """`jax.lax` with `scan` replaced by `vscan`."""

    scan = staticmethod(vscan)

    def __getattr__(self, name):
        return getattr(jax.lax, name)


@contextlib.contextmanager
def vmapped_scans():
    """Within this block, NumPyro's `scan` runs its loop through `vscan` (tracing is single-threaded:
    NumPyro's handler stack is global)."""
    module = sys.modules.get(_SCAN_MODULE)
    if module is None:
        yield
        return
    before = module.lax
    module.lax = _Lax()
    try:
        yield
    finally:
        module.lax = before
