"""State an objective carries from one step of a fit to the next: `running_average`.

An objective that averages an estimate over steps (a curvature or Fisher estimate, a
normaliser) declares it with `@provi.objective(carries=True)` and calls
`provi.running_average(guide, name, value, decay)`. The fit keeps the averages in
`params["objective"]`: `provi.setup` finds their shapes by tracing the objective once, each step
writes the new averages there after the optimiser's update (they take no gradient and the
optimiser does not move them), and checkpoints save them with the parameters. Step t's average
depends only on the steps before it, so it does not depend on how a fit is cut into chunks.

>>> import jax.numpy as jnp, provi
>>> @provi.objective(carries=True)
... def smoothed_elbo(model, guide, *args):
...     z, log_q = provi.sim(guide, *args, n=4)
...     elbo = jnp.mean(provi.density(model, z, *args) - log_q)
...     provi.running_average(guide, "elbo", elbo, 0.9)   # e.g. for a progress read-out
...     return elbo
>>> smoothed_elbo.keeps_state
True
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from provi.core.bound import BoundGuide
from provi.errors import ObjectiveError

__all__ = ["running_average"]


def running_average(guide: BoundGuide, name: str, value, decay: float = 0.9) -> jax.Array:
    """The exponentially weighted average of `value` over a fit's steps, this step's included:
    `sum_s decay^(t-s) value_s / sum_s decay^(t-s)` over steps s = 0..t (bias-corrected, so the
    first step returns `value` itself). Outside a fit's loop (`FitResult.evaluate`, a `Setup`'s
    `objective_and_grad`) there are no earlier steps and it returns `value`.

    The gradient flows through this step's term only (weight `(1 - decay) / normaliser`); the
    earlier steps' average is a constant. `value` keeps its shape and dtype from step to step.
    The objective must be declared with `@provi.objective(carries=True)`.
    """
    if not isinstance(guide, BoundGuide):
        raise TypeError("provi.running_average takes the guide an objective receives")
    if not 0.0 <= float(decay) < 1.0:
        raise ValueError(f"running_average({name!r}): decay must lie in [0, 1), got {decay}")
    if name in guide.carried_out:
        raise ObjectiveError(f"running_average: the name {name!r} is used twice in one objective evaluation")
    if guide.carried is None and guide.step is not None:
        raise ObjectiveError(
            f"running_average({name!r}) keeps state from step to step, and this objective does not declare any: "
            "decorate it with @provi.objective(carries=True)"
        )
    value = jnp.asarray(value)
    prev = (guide.carried or {}).get(name)
    if prev is None:
        total, weight = jnp.zeros_like(value), jnp.zeros((), value.dtype)
    else:
        total, weight = jax.lax.stop_gradient(prev["total"]), jax.lax.stop_gradient(prev["weight"])
        if total.shape != value.shape:
            raise ObjectiveError(f"running_average({name!r}): the value's shape changed from {total.shape} to {value.shape}")
    total = decay * total + (1.0 - decay) * value
    weight = decay * weight + (1.0 - decay)
    guide.carried_out[name] = {"total": jax.lax.stop_gradient(total), "weight": jax.lax.stop_gradient(weight)}
    return total / weight
