"""The public step API, in the style of optax and BlackJAX: `provi.setup(...)` returns pure
`init(key) -> state` and `step(state, key) -> (state, info)`; the user owns the loop.

```python
alg = provi.setup(model, J, sigma, y, guide="meanfield", init="prior")
state = alg.init(jax.random.PRNGKey(0))
step = jax.jit(alg.step)
for key in jax.random.split(jax.random.PRNGKey(1), 2000):
    state, info = step(state, key)            # info.loss: the negative objective estimate
res = provi.FitResult.from_state(alg, state)  # draws, summaries, diagnostics
```

`provi.fit` runs the same update (`make_update`) in its compiled, chunked loop; with the keys
`loop_keys(seed_keys(seed)[1], n)` and `init="prior"`, `early_stop=False`, `average=False`, a
scanned `step` reproduces its losses. Step t's keys are a pure function of the loop's key and t
(`step_key`), made for a whole chunk in one vectorised call: no key split inside the step.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from provi.core.enum import check_enumerable
from provi.core.local import LocalMoments
from provi.core.model import inspect_model
from provi.core.trace import as_jax, trace_model
from provi.core.objective import Objective
from provi.defaults import LEARNING_RATE
from provi.engine.layout import join_data, split_data
from provi.engine.loss import make_loss
from provi.engine.start import init_kind, initialise_family, point_start
from provi.estimators.surrogate import init_states, update_state
from provi.guides import Particles
from provi.kernels import Preconditioned
from provi.errors import EstimatorError
from provi.objectives import ELBO, STL, SVGD
from provi.programs import FamilyGuide, ModelProgram, make_guide

__all__ = ["VIState", "StepInfo", "Setup", "setup", "make_update", "step_key", "loop_keys", "seed_keys",
           "host_key", "default_optimizer", "check_objective", "check_optimizer"]


class VIState(NamedTuple):
    """A fit's state: parameters (`{"model", "guide"}`; for baselines, `"estimators"`; for an
    objective's running averages, `"objective"`), the optimiser's state, the guide's fixed
    constants (its preconditioner) and the step count."""

    params: Any
    opt_state: Any
    consts: Any
    step: jax.Array


class StepInfo(NamedTuple):
    """What one step reports: `loss`, the negative objective estimate at the parameters before the update."""

    loss: jax.Array


@functools.lru_cache(maxsize=None)
def default_optimizer(learning_rate: float = LEARNING_RATE) -> optax.GradientTransformation:
    """Adam with the given learning rate; cached so that repeated fits reuse their compiled loop."""
    return optax.adam(learning_rate)


def check_objective(objective, guide=None) -> Objective:
    """`objective`, or for None the default for `guide`: `provi.SVGD()` for particles (which
    have no density for an ELBO), `provi.ELBO()` otherwise; a clear error for anything else."""
    if objective is None:
        particles = guide == "particles" if isinstance(guide, str) else isinstance(guide, Particles)
        objective = SVGD() if particles else ELBO()
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a provi objective (e.g. provi.ELBO()), got {objective!r}")
    return objective


def check_start(objective: Objective, init) -> None:
    """Refuse a matrix kernel whose metric comes from the mode (`Preconditioned(by="mode")`) with a
    start that finds none (`init` other than "map"): there it would silently be the scalar kernel."""
    kernel = dict(objective.options).get("kernel")
    if isinstance(kernel, Preconditioned) and kernel.by == "mode" and not (isinstance(init, str) and init == "map"):
        raise ValueError(f"Preconditioned(by='mode') takes its metric from the mode that init='map' finds; with init={init!r} "
                         "no mode is found and it would be the scalar kernel: use init='map', or by='hessian' or by='fisher'")


def check_optimizer(optimizer) -> optax.GradientTransformation:
    """`optimizer`, or Adam for None; a clear error for anything else (e.g. the string "adam")."""
    optimizer = default_optimizer() if optimizer is None else optimizer
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax GradientTransformation (e.g. optax.adam(1e-2)), got {optimizer!r}")
    return optimizer


def make_update(model: ModelProgram, guide, objective: Objective, optimizer, layout) -> Callable:
    """`update(params, opt_state, consts, key, data, step=None) -> (params, opt_state, objective
    value)`: one optimiser step on one estimate of the objective's gradient (estimator states
    advanced); `step` is the number of steps taken before this one."""
    loss = make_loss(model, guide, objective, layout, with_carried=True)

    def update(params, opt_state, consts, key, data, step=None):
        (_, (value, carried)), grads = jax.value_and_grad(loss, has_aux=True)(params, consts, key, data, step)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        new = update_state(guide, params, optax.apply_updates(params, updates), value)
        if "objective" in params:  # the objective's running averages: this step's, not the optimiser's
            new = {**new, "objective": carried}
        return new, opt_state, value

    return update


def step_key(key, t) -> jax.Array:
    """The key pair (2, 2) of step `t` of a loop with key `key`: a pure function of the step
    counter, so a chunk's keys are made in one vectorised call and a fit's randomness does not
    depend on how its steps were cut into chunks (see `provi.core.bound.KeyStream` for the pair)."""
    return jax.random.split(jax.random.fold_in(key, t))


def loop_keys(key, n: int, start: int = 0) -> jax.Array:
    """The key pairs (n, 2, 2) of steps `start, ..., start + n - 1` of a loop with key `key`: the
    keys `provi.fit`'s loop gives its steps (`key` is `seed_keys(seed)[1]`)."""
    return jax.vmap(lambda t: step_key(key, t))(start + jnp.arange(n))


def seed_keys(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(init key, loop key)`: two independent raw threefry keys from an integer seed, made on the
    host (no compilation), as `provi.fit` makes them."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    ss = np.random.SeedSequence(int(seed)).generate_state(4)
    return np.asarray(ss[:2], np.uint32), np.asarray(ss[2:], np.uint32)


def host_key(seed: int) -> np.ndarray:
    """`jax.random.PRNGKey(seed)`'s raw key data, made on the host (no compiled program): the key
    of a result's draws.

    >>> import jax
    >>> bool((host_key(2**32 + 5) == jax.random.PRNGKey(2**32 + 5)).all())
    True
    """
    seed = int(seed)
    high = (seed >> 32) & 0xFFFFFFFF if jax.config.jax_enable_x64 else 0  # without x64, JAX keeps the low 32 bits
    return np.asarray([high, seed & 0xFFFFFFFF], np.uint32)


@dataclasses.dataclass(frozen=True, eq=False)
class Setup:
    """A model, a guide, an objective and an optimiser, ready to step (see `setup`)."""

    model: ModelProgram
    guide: Any  # a provi.core.program.AbstractGuide
    objective: Objective
    optimizer: optax.GradientTransformation
    data: list  # the array leaves of the model's arguments
    layout: Any  # their static layout (provi.engine.layout)
    args: tuple
    kwargs: dict
    init_with: Any = "map"

    @functools.cached_property
    def update(self) -> Callable:
        return make_update(self.model, self.guide, self.objective, self.optimizer, self.layout)

    @functools.cached_property
    def loss(self) -> Callable:
        """`loss(params, consts, key) -> (surrogate loss, objective estimate)`: the function every
        step differentiates, at the setup's data."""
        loss = make_loss(self.model, self.guide, self.objective, self.layout)
        return lambda params, consts, key: loss(params, consts, key, self.data)

    def objective_and_grad(self, params, key, consts=None) -> tuple[jax.Array, Any]:
        """`(objective estimate, gradient estimate of the objective)` at `params` (no update)."""
        (_, value), grads = jax.value_and_grad(self.loss, has_aux=True)(params, {} if consts is None else consts, key)
        return value, jax.tree.map(jnp.negative, grads)

    def start(self, key) -> tuple[VIState, list]:
        """`(state, notes)`: the starting state and what the start found (notes in words)."""
        key = raw_key(key)
        model_params = self.model.init_params()
        notes: list = []
        if isinstance(self.guide, FamilyGuide):
            kind, u_given = init_kind(self.init_with, self.guide.space)
            if kind != "map" and isinstance(key, jax.core.Tracer):  # under the user's jit or vmap: the pure start
                start = point_start(self.guide, self.model, self.layout, kind, self.optimizer)
                guide_params, opt_state, consts = start(key, model_params, self.data, jnp.asarray(u_given, jnp.result_type(float)))
            else:  # the same start, compiled once and cached (or the mode search, on the host)
                guide_params, consts, opt_state, notes = initialise_family(
                    self.guide, self.model, model_params, self.data, self.layout, key, self.init_with, self.optimizer
                )
            params = {"model": model_params, "guide": guide_params}
        else:
            params, consts = {"model": model_params, "guide": self.guide.init_params(key)}, {}
            if est_state := init_states(self.guide):  # explicit estimator state (baselines)
                params["estimators"] = est_state
            opt_state = self.optimizer.init(params)
        if self.objective.keeps_state:  # its running averages, zero (no steps yet): shapes from one trace
            params["objective"] = self.carried_zeros(params, consts, key)
            opt_state = self.optimizer.init(params)
        return VIState(params, opt_state, consts, np.zeros((), np.int32)), notes  # (on the host: no compiled program)

    def carried_zeros(self, params, consts, key) -> dict:
        """Zeros shaped as the running averages the objective leaves at `params` (`provi.running_average`)."""
        loss = make_loss(self.model, self.guide, self.objective, self.layout, with_carried=True)
        shapes = jax.eval_shape(lambda p, k: loss(p, consts, k, self.data, jnp.zeros((), jnp.int32))[1][1], params, key)
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def init(self, key) -> VIState:
        """The starting state. Pure (jit- and vmap-safe) except with `init="map"` for a family,
        whose mode search runs on the host."""
        return self.start(key)[0]

    def step(self, state: VIState, key) -> tuple[VIState, StepInfo]:
        """One optimisation step with randomness from `key` (one PRNG key, or a pair from `loop_keys`)."""
        key = raw_key(key)
        params, opt_state, value = self.update(state.params, state.opt_state, state.consts, key, self.data, state.step)
        return VIState(params, opt_state, state.consts, state.step + 1), StepInfo(-value)


def setup(model: Callable, *args, guide: Any = "auto", objective: Objective | None = None, optimizer=None,
          estimators: dict | None = None, init: str | dict = "map", seed: int = 0, **model_kwargs) -> Setup:
    """Prepare `guide` for `model(*args, **model_kwargs)`: pure `init` and `step` (see `Setup`).

    `guide` as in `provi.fit` ("auto" is the Gaussian the dimension affords: the staged pipeline
    of `provi.fit(guide="auto")` is a loop of its own); `objective` (default `provi.ELBO()`, and
    `provi.SVGD()` for particles), `optimizer` (default Adam(1e-2)), `estimators` and `init` as
    in `provi.fit`; `seed` seeds the tracing of a NumPyro guide.
    """
    if not callable(model):
        raise TypeError(f"provi.setup takes a NumPyro model function first, got {type(model).__name__}")
    if guide is None:
        raise ValueError("guide must be a name (e.g. 'auto', 'meanfield'), a family, or a NumPyro guide")
    objective, optimizer = check_objective(objective, guide), check_optimizer(optimizer)
    check_start(objective, init)
    constant = reads_data_values(model, args, model_kwargs)
    if not constant:  # NumPy data as JAX arrays: works everywhere, NumPyro's scan included
        args, model_kwargs = as_jax(args), as_jax(model_kwargs)
    info = inspect_model(model, args, model_kwargs)
    if info.enumerated:
        undrawable, chain = check_enumerable(model, args, model_kwargs, info.max_plate_nesting)
        info = dataclasses.replace(info, undrawable=undrawable, chain=chain)
    guide_prog = make_guide(guide, info, args, model_kwargs, seed_keys(seed)[0], estimators)
    if isinstance(guide_prog, FamilyGuide) and guide_prog.local:
        check_local(model, guide_prog, objective, args, model_kwargs)
    data, layout = split_data(args, model_kwargs, constant=constant)
    return Setup(ModelProgram(model, info), guide_prog, objective, optimizer, data, layout, args, dict(model_kwargs), init)


def raw_key(key):
    """`key` as raw uint32 key data: new-style typed keys (`jax.random.key`) and old-style ones
    (`jax.random.PRNGKey`) are both accepted by the step API."""
    key = key if isinstance(key, (jax.Array, np.ndarray)) else jnp.asarray(key)  # NumPy keys as they are: no compiled copy
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def check_local(model: Callable, guide: FamilyGuide, objective: Objective, args: tuple, kwargs: dict) -> None:
    """Refuse `LocalReparam` sites whose moments nothing in the model uses (a dense layer, a sparse
    GP's `condition(..., site=)`), and objectives that it would bias: only an ELBO's expectation is
    linear in each data point's likelihood, which is all that per-data-point pre-activation noise
    keeps."""
    if objective.fn not in (ELBO.fn, STL.fn):
        raise EstimatorError(
            f"site {guide.local[0]!r}: LocalReparam keeps only the ELBO unbiased (each data point draws its own "
            f"pre-activations), and {objective.name} needs one weight draw shared by all data points per particle; "
            "use objective=provi.ELBO(...) or provi.STL(...), or drop LocalReparam"
        )
    initial = guide.init_params(jax.random.PRNGKey(0))  # moments of the shapes a fit hands the model
    asking = LocalMoments(guide.local_moments(initial, guide.identity_consts(jnp.zeros(guide.space.dim))))
    with asking:
        trace_model(model, args, kwargs, np.zeros(2, np.uint32))
    unused = [s for s in guide.local if s not in asking.asked]
    if unused:
        raise EstimatorError(
            f"site {unused[0]!r}: LocalReparam applies to the weight (and bias) sites of the eqx.nn.Linear and "
            "eqx.nn.Conv layers that provi.nn.bayesian_module samples, and to a sparse GP's inducing values passed "
            "as svgp.condition(u, x, site=name) (or svgp.conditional(name, x)); nothing in the model uses this "
            "site's moments, so drop it from estimators="
        )


_CONCRETE_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerBoolConversionError,
)


def reads_data_values(model: Callable, args: tuple, kwargs: dict) -> bool:
    """Whether `model` computes shapes or Python control flow from its data's values (e.g. a
    plate of size `int(np.max(x)) + 1`), as NumPyro allows: then its data is compiled into the
    fit's programs as constants (`provi.engine.layout.Constant`) instead of being traced. Found by
    tracing the model once with abstract data."""
    data, layout = split_data(args, kwargs)

    def go(d):
        trace_model(model, *join_data(d, layout), np.zeros(2, np.uint32))
        return 0

    try:
        jax.make_jaxpr(go)(data)
    except _CONCRETE_ERRORS:
        return True
    return False
