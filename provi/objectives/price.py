"""The ELBO of a Gaussian family with its scale's gradient from Price's theorem (Price 1958; Fan,
Wang, Sinz, Xu & Sontag 2015; the "second-order" estimator of Gaussian VI).

For q = N(m, L L') and a log target f, Price's theorem gives d/dL E_q[f(m + L eps)] =
E_q[hess f] L, where the reparameterised gradient is E_q[grad f eps']. Both are unbiased; the first
averages Hessians, which vary far less across draws than `grad f eps'` does (for a Gaussian target
it has no variance at all). The cost is one Hessian of the log target per draw, D
Hessian-vector products: worth it for the moderate dimensions of full-rank families.

This is what `provi.optim.fb_gvi`, `bw_sgd` and `natgrad` read `E_q[hess V]` from: with
`PriceELBO` they receive the average Hessian at the draws itself instead of the Stein estimate.

>>> import provi
>>> provi.PriceELBO(num_particles=16)
PriceELBO(num_particles=16)
"""

import jax
import jax.numpy as jnp

from provi.core import rand
from provi.core.mode import curvature
from provi.core.objective import objective
from provi.core.vocab import density, detach, gaussian, place, random_key, replace_grad


@objective
def PriceELBO(model, guide, *args, num_particles: int = 2, antithetic: bool = True):
    """E_q[log p(x, z) - log q(z)] for `guide="fullrank"` or `"meanfield"`, with the exact
    Gaussian entropy and `num_particles` draws: the mean's gradient is the reparameterised one,
    E[grad log p]; the scale's is Price's, E[hess log p] L + L^-T (its diagonal for a mean-field
    family), with the Hessians taken at the same draws. `antithetic=True` draws in pairs (eps,
    -eps): the terms linear in eps cancel from the mean's gradient, whose noise is then that of
    the target's curvature only (unbiased either way). Model parameters (`numpyro.param` sites)
    get the reparameterised gradient. Forward-over-reverse Hessians (reverse-over-reverse where the
    model has no forward mode, as ODE solvers with `custom_vjp`)."""
    loc, scale = gaussian(guide)
    eps = rand.normal(random_key(guide), (num_particles, loc.shape[-1]), loc.dtype)
    if antithetic:
        eps = jnp.concatenate([eps[: (num_particles + 1) // 2], -eps[: num_particles // 2]])
    dense = scale.ndim == 2
    x = loc + (eps @ detach(scale).T if dense else eps * detach(scale))  # the scale's gradient is Price's below

    def log_target(v):
        values, log_jac = place(guide, v)
        return density(model, values, *args) + log_jac

    lp = log_target(x)
    neg_hess = jnp.mean(jax.vmap(lambda v: curvature(log_target, v))(detach(x)), 0)  # E[-hess log p]
    log_det = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(scale) if dense else scale)))
    if dense:
        price = -0.5 * jnp.sum(scale * (detach(neg_hess) @ scale))  # gradient E[hess log p] L
    else:
        price = -0.5 * jnp.sum(jnp.diagonal(detach(neg_hess)) * scale**2)
    value = jnp.mean(lp) + log_det + 0.5 * loc.shape[-1] * (1.0 + jnp.log(2 * jnp.pi))
    return replace_grad(value, value + price)
