"""The compiled training loop: a chunk of optimiser steps in one `lax.while_loop`.

`Runner` holds the jitted chunk function for one (model, guide, objective, optimiser, data layout);
runners are cached, so fitting the same model again, even on new data of the same shapes, does
not compile again. `Runner.prepare` compiles the chunk in a background thread from the shapes of
its arguments, so that XLA compiles it while the fit's start is traced, compiled and run. A chunk
runs up to `n` steps and stops early at the first non-finite loss; it returns the per-step losses,
the sum of the iterates (for averaging) and the first bad step.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from provi.core.subsample import SUBSAMPLE_TAG, SharedSubsample
from provi.core.vocab import BoundGuide, BoundModel, KeyStream, Objective
from provi.estimators import combine, update_state
from provi.estimators.branch import Branching, BranchState

__all__ = ["FitState", "Runner", "cached", "signature", "split_data", "join_data"]


class FitState(NamedTuple):
    """Everything the loop carries: parameters, optimiser state, PRNG key and the step count."""

    params: Any
    opt_state: Any
    key: jax.Array
    step: jax.Array


def split_data(args: tuple, kwargs: dict):
    """Split model arguments into array leaves (traced) and a hashable static layout (compiled in)."""
    leaves, treedef = jax.tree.flatten((args, kwargs))
    is_array = tuple(isinstance(x, (jax.Array, np.ndarray, np.generic)) for x in leaves)
    dynamic = [jnp.asarray(x) for x, a in zip(leaves, is_array) if a]
    static = tuple(x for x, a in zip(leaves, is_array) if not a)
    signature = tuple((x.shape, str(x.dtype)) for x in dynamic)
    return dynamic, (treedef, is_array, static, signature)


def join_data(dynamic, layout):
    treedef, is_array, static, _ = layout
    it_d, it_s = iter(dynamic), iter(static)
    leaves = [next(it_d) if a else next(it_s) for a in is_array]
    return jax.tree.unflatten(treedef, leaves)


def step_keys(key):
    """The next state key and the step's key pair (one split: see `KeyStream`)."""
    parts = jax.random.split(key, 3)
    return parts[0], parts[1:]


def make_loss(model_prog, guide_prog, objective: Objective, layout) -> Callable:
    """loss(params, consts, key, data) -> (surrogate loss to differentiate, objective value).

    The objective runs once; estimators that need it at other values of a site (Enumerate, MVD,
    leave-one-out baselines) have it re-run under vmap with the same key and the site's value
    overridden through the bound guide (`provi.estimators.branch`), and `combine` builds the
    surrogate from the value, the ledger's score terms and those branches.
    """

    def run(params, consts, key, data, state):
        args, kwargs = join_data(data, layout)
        keys = KeyStream(key)
        model = BoundModel(model_prog, params["model"], keys, args, kwargs)
        guide = BoundGuide(Branching(guide_prog, state), params["guide"], consts, keys, args, kwargs)
        with SharedSubsample(key=jax.random.fold_in(keys.root, SUBSAMPLE_TAG)):  # one set of plate indices per step
            value = objective.value(model, guide)
        return value, guide.ledger, guide.signals

    def loss(params, consts, key, data):
        state = BranchState()
        value, ledger, signals = run(params, consts, key, data, state)

        def rerun(override):
            return run(params, consts, key, data, BranchState(override=override, collect=False))[0]

        surr = combine(value, ledger, state, rerun, params.get("estimators", {}), signals)
        return -surr, value

    return loss


@dataclasses.dataclass(eq=False)
class Runner:
    """A compiled chunk function: `run(state, consts, data, n) -> (state, losses, iterate_sum, bad)`.

    With `stream=k > 0`, the first k leaves of `data` carry a leading step axis (a block of
    minibatches from a loader, see `provi.data`): step i of the chunk uses row i of each of them,
    and the other leaves as they are.
    """

    model: Any  # ModelProgram
    guide: Any  # guide program
    objective: Objective
    layout: Any
    optimizer: optax.GradientTransformation
    buffer: int
    average: bool
    stream: int = 0

    def __post_init__(self):
        self.loss = make_loss(self.model, self.guide, self.objective, self.layout)
        self.jit = jax.jit(self._chunk, compiler_options=COMPILER_OPTIONS)
        self.grad = jax.jit(jax.value_and_grad(self.loss, has_aux=True))
        self._compiled: dict = {}  # argument signature -> future of the compiled chunk

    def prepare(self, state: FitState, consts, data) -> None:
        """Start compiling the chunk for arguments of these shapes (arrays or `jax.ShapeDtypeStruct`s).

        Tracing and lowering run here: NumPyro's handler stack is global, so models are never
        traced on two threads at once. XLA's compilation runs on a worker thread, which it shares
        with the caller's next steps since the compiler releases the GIL.
        """
        args = (state, consts, data, np.int32(0))
        sig = signature(args)
        if sig not in self._compiled:
            lowered = self.jit.lower(*args)
            self._compiled[sig] = _compiler().submit(lowered.compile)

    def run(self, state: FitState, consts, data, n: int):
        """Run a chunk of up to `n` steps: `(state, losses, iterate_sum, steps_run, first_bad_step)`."""
        args = (state, consts, data, np.int32(n))
        ready = self._compiled.get(signature(args))
        return ready.result()(*args) if ready is not None else self.jit(*args)

    def _chunk(self, state: FitState, consts, data, n):
        opt, loss = self.optimizer, self.loss

        def body(carry):
            i, st, losses, acc = carry
            key, sub = step_keys(st.key)
            batch = [x[i] for x in data[: self.stream]] + list(data[self.stream :]) if self.stream else data
            (_, value), grads = jax.value_and_grad(loss, has_aux=True)(st.params, consts, sub, batch)
            updates, opt_state = opt.update(grads, st.opt_state, st.params)
            params = update_state(self.guide, st.params, optax.apply_updates(st.params, updates), value)
            losses = losses.at[i].set(-value)
            if self.average:
                acc = jax.tree.map(jnp.add, acc, params)
            return i + 1, FitState(params, opt_state, key, st.step + 1), losses, acc

        def last_finite(i, losses):  # the loss of the last step run is finite (no step run: true)
            return (i == 0) | jnp.isfinite(losses[jnp.maximum(i - 1, 0)])

        def keep_going(carry):  # the non-finite check reads the loss buffer: no extra state per step
            i, _, losses, _ = carry
            return (i < n) & last_finite(i, losses)

        acc = jax.tree.map(jnp.zeros_like, state.params) if self.average else ()
        losses = jnp.full((self.buffer,), jnp.nan, dtype=jnp.result_type(float))
        i, state, losses, acc = jax.lax.while_loop(keep_going, body, (jnp.asarray(0), state, losses, acc))
        bad = jnp.where(last_finite(i, losses), -1, state.step - 1)
        return state, losses, acc, i, bad


# LLVM at -O1 for the loop: its kernels run as fast as at the default level (measured on the eight
# schools and VAE steps) and compile faster.
COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def signature(args) -> tuple:
    """What a program compiled ahead for `args` is specialised to: the tree, and each leaf's shape,
    dtype and device count (a hashable key)."""
    leaves, treedef = jax.tree.flatten(args)

    def devices(x):
        sharding = getattr(x, "sharding", None)
        return 1 if sharding is None else len(sharding.device_set)

    def spec(x):
        shape, dtype = (x.shape, x.dtype) if hasattr(x, "dtype") else (np.shape(x), np.result_type(x))
        return tuple(shape), np.dtype(dtype), devices(x)

    return (treedef,) + tuple(spec(x) for x in leaves)


_POOL: list = []


def _compiler() -> concurrent.futures.ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="provi-compile"))
    return _POOL[0]


_CACHE: "collections.OrderedDict[Any, Any]" = collections.OrderedDict()
_CACHE_SIZE = 64


def cached(key, build: Callable[[], Any]) -> Any:
    """The compiled object cached under `key`, built on first use (least recently used ones are
    dropped); a key that cannot be hashed is never cached."""
    if key is None:
        return build()
    try:
        hash(key)
    except TypeError:
        return build()
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    runner = _CACHE[key] = build()
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return runner
