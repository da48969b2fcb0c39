"""The compiled training loop: a chunk of optimiser steps in one `lax.while_loop`.

`Runner` holds the jitted chunk function for one (model, guide, objective, optimiser, data layout);
runners are cached (`provi.engine.compile.cached`), so fitting the same model again, even on new
data of the same shapes, does not compile again. `Runner.prepare` compiles the chunk on a worker
thread from the shapes of its arguments, so that XLA compiles it while the fit's start is traced,
compiled and run. A chunk runs up to `n` steps of `provi.engine.step.make_update` and stops early
at the first non-finite loss; it returns the per-step losses, the sum of the iterates of the
model's and the guide's parameters (for averaging; states such as an objective's running averages
are not averaged) and the first bad step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from provi.core.objective import Objective
from provi.defaults import LOOP_COMPILER_OPTIONS
from provi.engine.compile import ahead, call
from provi.engine.loss import make_loss
from provi.engine.schedule import averaged
from provi.engine.step import loop_keys, make_update

__all__ = ["FitState", "Runner"]


class FitState(NamedTuple):
    """Everything the loop carries: parameters, optimiser state, the loop's PRNG key (constant:
    step t's keys are `provi.engine.step.step_key(key, t)`) and the step count."""

    params: Any
    opt_state: Any
    key: jax.Array
    step: jax.Array


@dataclasses.dataclass(eq=False)
class Runner:
    """A compiled chunk function: `run(state, consts, data, n) -> (state, losses, iterate_sum, steps, bad)`.

    With `stream=k > 0`, the first k leaves of `data` carry a leading step axis (a block of
    minibatches from a loader, see `provi.engine.data`): step i of the chunk uses row i of each of
    them, and the other leaves as they are.
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
        self.update = make_update(self.model, self.guide, self.objective, self.optimizer, self.layout)
        self.jit = jax.jit(self._chunk, compiler_options=LOOP_COMPILER_OPTIONS)
        self.grad = jax.jit(jax.value_and_grad(make_loss(self.model, self.guide, self.objective, self.layout), has_aux=True))

    def prepare(self, state: FitState, consts, data) -> None:
        """Start compiling the chunk, on the compiler thread, for arguments of these shapes (arrays
        or `jax.ShapeDtypeStruct`s): `provi.engine.compile.ahead`."""
        ahead(self.jit, state, consts, data, np.int32(0))

    def run(self, state: FitState, consts, data, n: int):
        """Run a chunk of up to `n` steps: `(state, losses, iterate_sum, steps_run, first_bad_step)`."""
        return call(self.jit, state, consts, data, np.int32(n))

    def _chunk(self, state: FitState, consts, data, n):
        keys = loop_keys(state.key, self.buffer, state.step)  # the chunk's keys, in one vectorised call

        def body(carry):
            i, st, losses, acc = carry
            batch = [x[i] for x in data[: self.stream]] + list(data[self.stream :]) if self.stream else data
            params, opt_state, value = self.update(st.params, st.opt_state, consts, keys[i], batch, st.step)
            losses = losses.at[i].set(-value)
            if self.average:
                acc = jax.tree.map(jnp.add, acc, averaged(params))
            return i + 1, FitState(params, opt_state, st.key, st.step + 1), losses, acc

        def last_finite(i, losses):  # the loss of the last step run is finite (no step run: true)
            return (i == 0) | jnp.isfinite(losses[jnp.maximum(i - 1, 0)])

        def keep_going(carry):  # the non-finite check reads the loss buffer: no extra state per step
            i, _, losses, _ = carry
            return (i < n) & last_finite(i, losses)

        acc = jax.tree.map(jnp.zeros_like, averaged(state.params)) if self.average else ()
        losses = jnp.full((self.buffer,), jnp.nan, dtype=jnp.result_type(float))
        i, state, losses, acc = jax.lax.while_loop(keep_going, body, (jnp.asarray(0), state, losses, acc))
        bad = jnp.where(last_finite(i, losses), -1, state.step - 1)
        return state, losses, acc, i, bad
