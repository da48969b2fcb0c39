"""The whitened sparse variational GP (Hensman, Fusi & Lawrence 2013; Hensman, Matthews &
Ghahramani 2015) as a helper inside a NumPyro model.

f ~ GP(0, k). With M inducing inputs Z, L = chol(K_zz + jitter I) and whitened inducing values
u ~ N(0, I) (one latent site of shape (M,)), the inducing outputs are f(Z) = L u and, for inputs
x (n of them),

    f(x) | u ~ N(A u, diag(K_xx) - ||L^-1 K_zx||^2 per input),   A = K_xz L^-T  (n, M),

which `SVGP.conditional` returns as `(f_loc, f_var)` (the marginals; the likelihood terms of
`provi.gp.likelihoods` need no more). With a Gaussian q(u) = N(m, S) (a provi Gaussian family),
f(x) is Gaussian with mean A m and variance diag(K_xx) - ||L^-1 K_zx||^2 + diag(A S A^T):
`predict`.

Kernels are tinygp's (`tinygp.kernels.ExpSquared`, `Matern32`, sums, products, ...): a kernel `k`
gives the matrix `k(X1, X2)` and the diagonal `k(X)`. Inputs are arrays with a leading data axis:
(n,) for scalar inputs, (n, d) for vectors, as tinygp takes them.

>>> import jax.numpy as jnp
>>> from tinygp import kernels
>>> svgp = SVGP(kernels.ExpSquared(scale=0.5), jnp.linspace(0.0, 1.0, 4))
>>> loc, var = svgp.condition(jnp.zeros(4), jnp.array([0.2, 0.7]))
>>> loc.shape, var.shape
((2,), (2,))
>>> mean, var = predict(svgp, jnp.array([0.2, 0.7]), jnp.zeros(4), jnp.eye(4))  # q(u) = the prior
>>> [round(float(v), 4) for v in var]  # the prior variance k(x, x)
[1.0, 1.0]
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.scipy.linalg import solve_triangular
from numpyro import handlers
from tinygp import kernels

from provi.core.local import local_moments
from provi.errors import ModelError

__all__ = ["SVGP", "Whitened", "predict", "moments", "sample_global", "DEFAULT_JITTER"]

DEFAULT_JITTER = 1e-6  # added to the diagonal of K_zz before its Cholesky factorisation


class Whitened(eqx.Module):
    """What the sparse GPs share (`SVGP`, `provi.gp.multi.LMC`): whitened inducing values
    u ~ N(0, I_K) as one global latent site, and f(x) given u from `project(x) -> (A, v)`
    (mean A u, variance v). Subclasses give `num_inducing`, K, the size of the site."""

    @abc.abstractmethod
    def project(self, x) -> tuple[jax.Array, jax.Array]:
        """`(A, v)` at the inputs `x`: the mean of f(x) given u is A u, its variance v."""

    def condition(self, u, x, site: str | None = None) -> tuple[jax.Array, jax.Array]:
        """Mean A u and variance v of f(x) given whitened inducing values `u` (K,).

        `site`: the name `u` was sampled as. Where a fit holds `provi.estimators.LocalReparam()`
        on that site, u is integrated out instead: the mean A m and variance v + diag(A S A^T) of
        f(x) under the guide's Gaussian q(u) = N(m, S) (the marginal q(f(x)), as GPJax's bound
        uses), so the expected log-likelihood no longer varies with the draw of u. Elsewhere (NUTS,
        predictive draws, other estimators) `u` is used as given."""
        a, v = self.project(x)
        moments = None if site is None else local_moments(site)
        if moments is None:
            return a @ u, v
        loc, scale = moments  # scale: (K,) for a mean-field guide, a (K, K) factor of S for a full-rank one
        spread = a * scale if jnp.ndim(scale) == 1 else a @ scale
        return a @ loc, v + jnp.sum(spread**2, axis=-1)

    def prior(self) -> dist.Distribution:
        """The whitened prior N(0, I) of u, event shape (K,)."""
        return dist.Normal(jnp.zeros(self.num_inducing), 1.0).to_event(1)

    def inducing_values(self, name: str) -> jax.Array:
        """Sample the whitened inducing values as the latent site `name` ~ N(0, I_K) and return
        them; call it outside every plate (u is global), once per model run. The site is marked
        `infer={"init": "standard"}`: a fit's Laplace start puts q(u) at this prior, as GPJax
        and GPflow start it, not at the mode (which holds hyperparameters fitted alongside at
        their starting values for many steps)."""
        return sample_global(name, self.prior())

    def conditional(self, name: str, x) -> tuple[jax.Array, jax.Array]:
        """Sample the whitened inducing values as the site `name` (see `inducing_values`) and
        return the mean and variance of f(x) given them (`condition(u, x, site=name)`)."""
        return self.condition(self.inducing_values(name), x, site=name)


class SVGP(Whitened):
    """A sparse variational GP prior: a tinygp `kernel`, inducing inputs `inducing` (M,) or
    (M, d), and `jitter` added to K_zz's diagonal. Build it inside the model when the kernel's
    hyperparameters or the inducing inputs are sites (`numpyro.param` or `numpyro.sample`)."""

    kernel: kernels.Kernel
    inducing: jax.Array
    jitter: float = eqx.field(static=True)

    def __init__(self, kernel, inducing, jitter=DEFAULT_JITTER):
        if not isinstance(kernel, kernels.Kernel):
            raise TypeError(f"SVGP takes a tinygp kernel (tinygp.kernels.ExpSquared(...), ...), got {type(kernel).__name__}")
        inducing = jnp.asarray(inducing)
        if inducing.ndim not in (1, 2) or inducing.shape[0] < 1:
            raise ValueError(f"inducing inputs must have shape (M,) or (M, d) with M >= 1, got {inducing.shape}")
        if not float(jitter) >= 0.0:
            raise ValueError(f"jitter must be >= 0, got {jitter!r}")
        self.kernel, self.inducing, self.jitter = kernel, inducing, float(jitter)

    @property
    def num_inducing(self) -> int:
        """M, the number of inducing inputs (the size of the whitened site)."""
        return self.inducing.shape[0]

    def cholesky(self) -> jax.Array:
        """L = chol(K_zz + jitter I), shape (M, M)."""
        kzz = self.kernel(self.inducing, self.inducing)
        return jnp.linalg.cholesky(kzz + self.jitter * jnp.eye(self.num_inducing, dtype=kzz.dtype))

    def project(self, x) -> tuple[jax.Array, jax.Array]:
        """`(A, v)`: A = K_xz L^-T of shape (n, M), and v = diag(K_xx) - ||L^-1 K_zx||^2 of
        shape (n,), the variance of f(x) given u (clipped at 0)."""
        x = self._inputs(x)
        w = solve_triangular(self.cholesky(), self.kernel(self.inducing, x), lower=True)  # L^-1 K_zx (M, n)
        return w.T, jnp.maximum(self.kernel(x) - jnp.sum(w**2, axis=0), 0.0)


    def _inputs(self, x):
        x = jnp.asarray(x)
        if x.shape[1:] != self.inducing.shape[1:]:
            raise ValueError(f"inputs of shape {x.shape} do not match the inducing inputs' shape {self.inducing.shape} "
                             f"(both (n,) for scalar inputs, or (n, d))")
        return x


def sample_global(name: str, prior: dist.Distribution) -> jax.Array:
    """`numpyro.sample(name, prior)` with q(u) started at the prior (`infer={"init": "standard"}`,
    `provi.engine.start`), refused inside a plate (inducing values are global)."""
    with handlers.trace() as tr:
        u = numpyro.sample(name, prior, infer={"init": "standard"})
    frames = [f.name for f in tr[name]["cond_indep_stack"]]
    if frames:
        raise ModelError(
            f"the inducing values {name!r} were sampled inside plate(s) {frames}: they are global, so call "
            f"svgp.conditional / svgp.inducing_values before entering the plate and index the inputs inside it"
        )
    return u


def predict(svgp: SVGP, x, q_mean, q_cov) -> tuple[jax.Array, jax.Array]:
    """Mean A m and variance diag(K_xx) - ||L^-1 K_zx||^2 + diag(A S A^T) of f(x) under
    q(u) = N(`q_mean`, `q_cov`) (m of shape (M,), S of shape (M, M)), each (n,): the latent
    function's predictive; add the noise variance for a Gaussian observation's. For an `LMC`
    (provi.gp.multi), each (n, P)."""
    q_mean, q_cov = jnp.asarray(q_mean), jnp.asarray(q_cov)
    m = svgp.num_inducing
    if q_mean.shape != (m,) or q_cov.shape != (m, m):
        raise ValueError(f"q_mean and q_cov must have shapes ({m},) and ({m}, {m}), got {q_mean.shape} and {q_cov.shape}")
    a, v = svgp.project(x)
    return a @ q_mean, v + jnp.sum((a @ q_cov) * a, axis=-1)


def moments(draws) -> tuple[jax.Array, jax.Array]:
    """Sample mean (M,) and covariance (M, M) of draws (S, M) of u, e.g. `res.sample(4000)["u"]`
    from a fit: an estimate of q(u)'s m and S for `predict`."""
    draws = jnp.asarray(draws)
    if draws.ndim != 2 or draws.shape[0] < 2:
        raise ValueError(f"moments takes draws of shape (S, M) with S >= 2, got {draws.shape}")
    mean = jnp.mean(draws, axis=0)
    centred = draws - mean
    return mean, centred.T @ centred / (draws.shape[0] - 1)
