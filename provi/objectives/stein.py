"""Stein variational gradient descent (Liu & Wang 2016) as an objective over a particle guide.

The objective's value is the particles' mean log target; its gradient in the particles is the
Stein direction, written as a surrogate `sum_i x_i . stop_gradient(phi_i)` (`provi.replace_grad`),
so any optax optimiser moves particle i along `phi_i` and the engine needs nothing special. Model
parameters (`numpyro.param` sites) get the gradient of the mean log target at the particles.

>>> import provi
>>> provi.SVGD(kernel=provi.kernels.IMQ())
SVGD(kernel=IMQ())
"""

import jax
import jax.numpy as jnp

from provi.core.objective import objective
from provi.core.vocab import density, particles, place, random_key, replace_grad, step_count
from provi.kernels import RBF, RandomFeatures, scalar_kernel, stein_direction


def log_target(model, guide, x, *args):
    """The log target at points `x` (N, D) of a particle guide's coordinates, and its gradient:
    `(log_p (N,), score (N, D))`, one model evaluation with its reverse pass. The values carry
    the gradient of the model's parameters; `x` is cut from it."""

    def total(y):
        values, log_jac = place(guide, y)
        lp = density(model, values, *args) + log_jac
        return jnp.sum(lp), lp

    (_, lp), score = jax.value_and_grad(total, has_aux=True)(jax.lax.stop_gradient(x))
    return lp, score


def annealing(step, steps: int, cycles: int = 1, power: float = 1.0):
    """ASVGD's cyclical schedule (D'Angelo & Fortuin 2021) for the weight of SVGD's driving term:
    over the first `steps` steps, `cycles` periods in each of which it rises from 0 to 1 as
    `(phase)^power`; 1 after them, and 1 where the step is unknown (`step=None`).

    >>> import jax.numpy as jnp
    >>> from provi.objectives.stein import annealing
    >>> [float(annealing(jnp.int32(t), 100, cycles=2)) for t in (0, 25, 50, 75, 100)]
    [0.0, 0.5, 0.0, 0.5, 1.0]
    """
    if step is None or steps <= 0:
        return 1.0
    period = steps / cycles
    phase = jnp.mod(step, period) / period
    return jnp.where(step < steps, phase**power, 1.0)


@objective
def SVGD(model, guide, *args, kernel=RBF(), repulsion: float = 1.0, anneal: int = 0, cycles: int = 1, power: float = 1.0,
         block: int | None = None):
    """Stein variational gradient descent: particle i moves along
    `phi_i = M^-1 mean_j [k(x_j, x_i) grad log p(x_j)] + repulsion * mean_j grad_{x_j} k(x_j, x_i)`
    (`provi.kernels.stein_direction`). Use it with `guide=provi.guides.Particles(n)`.

    `kernel`: a scalar kernel from `provi.kernels` (`RBF()`, `IMQ()`; bandwidth by the median
    heuristic unless given) acts in the model's unconstrained space; `RandomFeatures(R)` is the
    RBF kernel through R random Fourier features redrawn each step, O(n R D) per step for many
    particles instead of O(n^2 D); `Preconditioned(RBF(),
    by="mode")` is the matrix-valued kernel with the Hessian at the mode (Wang et al. 2019), and
    `by="fisher"` re-estimates it from the particles' scores each step. `repulsion` below 1 weakens
    the kernel's repulsive term (1 is SVGD). `anneal > 0` is annealed SVGD (ASVGD): the driving
    term's weight follows `annealing(step, anneal, cycles, power)`, so that the particles first
    spread under the repulsion and then settle; after `anneal` steps it is SVGD. `block`: an exact
    kernel's Gram matrix is computed that many rows at a time (`provi.kernels.BLOCK_ROWS` by
    default, past that many particles), in memory O(block n) rather than O(n^2).
    """
    x, metric = particles(guide)
    lp, score = log_target(model, guide, x, *args)
    gamma = annealing(step_count(guide), anneal, cycles, power)
    key = random_key(guide) if isinstance(scalar_kernel(kernel), RandomFeatures) else None
    phi, _ = stein_direction(kernel, jax.lax.stop_gradient(x), score, metric, repulsion, gamma, key, block)
    surrogate = jnp.sum(x * jax.lax.stop_gradient(phi)) + jnp.mean(lp)
    return replace_grad(jnp.mean(lp), surrogate)
