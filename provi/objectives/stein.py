"""Stein variational gradient descent (Liu & Wang 2016) as an objective over a particle guide, and
Stein mixtures (Nalisnick & Smyth 2017; NumPyro's SteinVI), its counterpart over the components
of a mixture.

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

from provi.core import rand
from provi.core.objective import objective
from provi.core.running import running_average
from provi.core.vocab import components, density, particles, place, random_key, replace_grad, step_count
from provi.distributions import meanfield_mixture_log_prob
from provi.errors import ObjectiveError
from provi.kernels import RBF, Preconditioned, RandomFeatures, scalar_kernel, score_fisher, stein_direction

__all__ = ["SVGD", "SteinMixture", "log_target", "mean_hessian", "annealing"]


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


def mean_hessian(model, guide, x, *args) -> jax.Array:
    """The mean over points `x` (N, D) of a particle guide's coordinates of the Hessian of
    `-log p` (D, D). The summed log target's Hessian is block-diagonal over the points, so D
    Hessian-vector products with the same direction at every point give all N Hessians' columns;
    they are reverse-over-reverse, so models with `custom_vjp` functions (ODE solvers) work. Cut
    from the gradient."""
    n, d = x.shape

    def total(y):
        values, log_jac = place(guide, y)
        return jnp.sum(density(model, values, *args) + log_jac)

    grad = jax.grad(total)
    y = jax.lax.stop_gradient(x)
    directions = jnp.broadcast_to(jnp.eye(d, dtype=x.dtype)[:, None, :], (d, n, d))  # e_k at every point
    columns = jax.vmap(lambda e: jax.grad(lambda z: jnp.sum(grad(z) * e))(y))(directions)  # [k, i] = H_i e_k
    return jax.lax.stop_gradient(-jnp.mean(columns, 1))


def _curvature(model, guide, kernel, x, score, *args):
    """A `Preconditioned` kernel's curvature estimate this step (a running average with `decay`),
    or None where the kernel brings its own (`by="mode"`, scalar kernels)."""
    if not isinstance(kernel, Preconditioned) or kernel.by == "mode":
        return None
    if kernel.by == "fisher":
        estimate = score_fisher(score)
    else:
        n = x.shape[0]
        if kernel.subset is not None and kernel.subset < n:
            x = x[jax.random.choice(random_key(guide), n, (kernel.subset,), replace=False)]
        estimate = mean_hessian(model, guide, x, *args)
    return running_average(guide, kernel.by, estimate, kernel.decay) if kernel.decay > 0 else estimate


def _running(options) -> bool:
    kernel = options.get("kernel")
    return isinstance(kernel, Preconditioned) and kernel.decay > 0


@objective(carries=_running)
def SVGD(model, guide, *args, kernel=RBF(), repulsion: float = 1.0, anneal: int = 0, cycles: int = 1, power: float = 1.0,
         block: int | None = None):
    """Stein variational gradient descent: particle i moves along
    `phi_i = M^-1 mean_j [k(x_j, x_i) grad log p(x_j)] + repulsion * mean_j grad_{x_j} k(x_j, x_i)`
    (`provi.kernels.stein_direction`). Use it with `guide=provi.guides.Particles(n)`.

    `kernel`: a scalar kernel from `provi.kernels` (`RBF()`, `IMQ()`; bandwidth by the median
    heuristic unless given) acts in the model's unconstrained space; `RandomFeatures(R)` is the
    RBF kernel through R random Fourier features redrawn each step, O(n R D) per step for many
    particles instead of O(n^2 D); `Preconditioned(RBF(), by="mode")` is the matrix-valued kernel
    with the Hessian at the mode (Wang et al. 2019), `by="hessian"` with the particles' mean
    Hessian (`mean_hessian`, D products per step) and `by="fisher"` with their scores' outer
    products; with `decay=0.9`, say, the estimate is a running average over the steps
    (`provi.running_average`, kept in `params["objective"]["hessian" | "fisher"]`). `repulsion`
    below 1 weakens the kernel's repulsive term (1 is SVGD). `anneal > 0` is annealed SVGD (ASVGD): the driving
    term's weight follows `annealing(step, anneal, cycles, power)`, so that the particles first
    spread under the repulsion and then settle; after `anneal` steps it is SVGD. `block`: an exact
    kernel's Gram matrix is computed that many rows at a time (`provi.kernels.BLOCK_ROWS` by
    default, past that many particles), in memory O(block n) rather than O(n^2).
    """
    x, metric = particles(guide)
    lp, score = log_target(model, guide, x, *args)
    gamma = annealing(step_count(guide), anneal, cycles, power)
    key = random_key(guide) if isinstance(scalar_kernel(kernel), RandomFeatures) else None
    curvature = _curvature(model, guide, kernel, x, score, *args)
    phi, _ = stein_direction(kernel, jax.lax.stop_gradient(x), score, metric, repulsion, gamma, key, block, curvature)
    surrogate = jnp.sum(x * jax.lax.stop_gradient(phi)) + jnp.mean(lp)
    return replace_grad(jnp.mean(lp), surrogate)


@objective
def SteinMixture(model, guide, *args, kernel=RBF(), num_particles: int = 1, repulsion: float = 1.0):
    """A Stein mixture (ELBO-within-Stein; Nalisnick & Smyth 2017, NumPyro's `SteinVI`): SVGD over
    the components of `guide=provi.guides.MeanFieldMixture(K)`. Each component k is a particle
    theta_k = (loc_k, log_scale_k); its driving force is K times the gradient in theta_k of the
    mixture's ELBO, estimated from `num_particles` reparameterized draws of every component, and a
    scalar `kernel` on the thetas (`RBF()`, `IMQ()`; median bandwidth unless given) repels the
    components from one another (weighted by `repulsion`). Where plain ELBO steps let the
    components pile onto one mode, the repulsion keeps them apart, so they spread over the modes
    and the shape of the posterior. The value is the mixture's ELBO estimate; `numpyro.param` sites
    of the model get its gradient."""
    if isinstance(kernel, Preconditioned) or isinstance(scalar_kernel(kernel), RandomFeatures):
        raise ObjectiveError("SteinMixture takes a scalar kernel on the components (RBF(), IMQ())")
    loc, log_scale = components(guide)
    k, d = loc.shape
    theta = jnp.concatenate([loc, log_scale], -1)  # (K, 2D)
    eps = rand.normal(random_key(guide), (num_particles, k, d), loc.dtype)

    def bound(theta):
        loc, log_scale = theta[:, :d], theta[:, d:]
        v = (loc + jnp.exp(log_scale) * eps).reshape(-1, d)  # draw i of component k: row i K + k
        values, log_jac = place(guide, v)
        return jnp.mean(density(model, values, *args) + log_jac - meanfield_mixture_log_prob(loc, log_scale, v))

    value, grad = jax.value_and_grad(bound)(jax.lax.stop_gradient(theta))
    phi, _ = stein_direction(kernel, jax.lax.stop_gradient(theta), k * grad, None, repulsion)
    return replace_grad(value, jnp.sum(theta * jax.lax.stop_gradient(phi)) + value)
