"""The compiled programs a fit's results run: guide draws, their importance weights, and the model's
deterministic sites at each draw.

`draw` and `log_weights` run a handful of times per fit (auto's k-hat, `summary()`), so they are
compiled at LLVM's optimisation level 1, as the training loop is: on the Student-t family, whose
gamma sampler is a large program, that takes 1.1 s to compile instead of 1.4 s, and the draws run as
fast (2.25 ms against 2.13 ms for 4,000 draws; RealNVP 0.56 s against 0.80 s, 3.4 ms either way).

`prepare` compiles a draw program and its importance weights ahead, on the compiler thread, from
shapes alone: `provi.fit` does so for auto's first k-hat, queued behind its training loop (they
compile while the start runs); `run_draw` and `run_log_weights` use them, else the jitted programs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from provi.core.bound import KeyStream
from provi.core.trace import run
from provi.defaults import LOG_WEIGHT_BLOCK, LOOP_COMPILER_OPTIONS
from provi.engine.compile import ahead, call
from provi.engine.layout import join_data

__all__ = ["draw", "log_weights", "deterministic", "draws_per_block", "prepare", "run_draw", "run_log_weights"]


def draws_per_block(n: int, data) -> int:
    """Draws per block of a per-draw model evaluation: about `LOG_WEIGHT_BLOCK` data elements in all (S x N at once else)."""
    size = sum(int(np.size(x)) for x in jax.tree.leaves(data))
    return max(1, min(int(n), LOG_WEIGHT_BLOCK // max(size, 1)))


_DRAW_STATIC, _WEIGHTS_STATIC = (0, 3, 7), (0, 5)  # the static arguments of `draw` and `log_weights`


@functools.partial(jax.jit, static_argnums=_DRAW_STATIC, compiler_options=LOOP_COMPILER_OPTIONS)
def draw(guide, params, consts, n, key, block, data, layout):
    """`(z, log q(z))`: `n` draws of `guide` at `params` (`z` constrained, {site: (n, ...)}) with
    the raw key `key` for `block` 0, `fold_in(key, block)` for another block of a larger set (in
    the program: no separately compiled key derivation)."""
    args, kwargs = join_data(data, layout)
    key = jnp.where(block == 0, key, jax.random.fold_in(key, block))
    return guide.sim(params, consts, key, n, args, kwargs, [])


@functools.partial(jax.jit, static_argnums=_WEIGHTS_STATIC, compiler_options=LOOP_COMPILER_OPTIONS)
def log_weights(model, model_params, z, log_q, data, layout):
    """log p(x, z) - log q(z) at each draw of `z`, in blocks of draws (`draws_per_block`)."""
    args, kwargs = join_data(data, layout)
    one = lambda v: model.log_density(model_params, v, args, kwargs, KeyStream(jax.random.PRNGKey(0)))  # noqa: E731
    return jax.lax.map(one, z, batch_size=draws_per_block(log_q.shape[0], data)) - log_q


def prepare(guide, model, params, consts, n: int, data, layout) -> None:
    """Compile, on the compiler thread (`provi.engine.compile.ahead`), `draw` of `n` draws (block
    0, any raw key) and their `log_weights`, for parameters `params` (`{"model", "guide"}`),
    `consts` and `data` of these shapes (arrays or `jax.ShapeDtypeStruct`s)."""
    draw_args = (guide, params["guide"], consts, n, jax.ShapeDtypeStruct((2,), np.uint32), jax.ShapeDtypeStruct((), np.int32), data, layout)
    z, log_q = jax.eval_shape(draw, *draw_args)
    ahead(draw, *draw_args, static=_DRAW_STATIC)
    ahead(log_weights, model, params["model"], z, log_q, data, layout, static=_WEIGHTS_STATIC)


def run_draw(guide, params, consts, n, key, block, data, layout):
    """`draw(...)`, by the program `prepare` compiled ahead where there is one."""
    return call(draw, guide, params, consts, n, key, block, data, layout, static=_DRAW_STATIC)


def run_log_weights(model, model_params, z, log_q, data, layout):
    """`log_weights(...)`, by the program `prepare` compiled ahead where there is one."""
    return call(log_weights, model, model_params, z, log_q, data, layout, static=_WEIGHTS_STATIC)


@functools.partial(jax.jit, static_argnums=(0, 1, 5))
def deterministic(model, names, model_params, z, data, layout):
    """The model's deterministic sites `names` at each draw of `z`, in blocks as `log_weights`."""
    args, kwargs = join_data(data, layout)

    def one(v):  # one run of the model per draw, every site read off its trace
        tr = run(model.model, jax.random.PRNGKey(0), args, kwargs, {**model_params, **v})
        return {k: tr[k]["value"] for k in names}
    return jax.lax.map(one, z, batch_size=draws_per_block(len(next(iter(z.values()))), data))
