"""Sparse variational Gaussian processes inside ordinary NumPyro models.

Floor 3 (a sibling of `provi.optim` and `provi.bdl`): modelling helpers that import jax, numpyro,
equinox, tinygp and floor 1 only.

- `provi.gp.svgp`: `SVGP(kernel, Z)`, the whitened SVGP (Hensman et al. 2013, 2015) with a
  tinygp kernel; `svgp.conditional("u", x)` samples the whitened inducing values as one latent
  site u ~ N(0, I_M) and returns the mean and variance of f(x) given u; `predict` gives f's
  predictive under q(u) = N(m, S); `moments` estimates m, S from a fit's draws of u.
- `provi.gp.likelihoods`: `expected_log_likelihood(name, likelihood, y, f_loc, f_var)` adds
  E[log p(y_i | f_i)] under f_i | u as a factor: exact for `Gaussian(scale)`, Gauss-Hermite for a
  function f -> NumPyro distribution (`BernoulliProbit` for a probit classifier).
- `provi.gp.natgrad`: `elbo`, the bound at a Gaussian q(u) = N(m, S) in closed form (Gauss-Hermite
  for non-Gaussian likelihoods) on a minibatch, and `natgrad_step`, one natural-gradient step of
  q(u) for any of those likelihoods (Salimbeni et al. 2018), for a user's own loop.
- `provi.gp.multi`: `LMC(latents, mixing)`, several outputs as a linear model of coregionalisation
  over SVGPs, with their whitened values stacked into one site; `predict`, `elbo` and
  `natgrad_step` take it where they take an `SVGP`.
- `kernels`: tinygp's kernels, re-exported (sums and products of kernels give additive and
  product structure).

With a Gaussian guide over u (e.g. `guide="fullrank"`), `provi.fit` maximises the SVGP bound:
E_q(u)[sum_i E_{p(f_i|u)} log p(y_i | f_i)] - KL(q(u) || N(0, I)), Monte Carlo over u only.
"""

from tinygp import kernels

from provi.gp import likelihoods, multi, natgrad, svgp
from provi.gp.likelihoods import BernoulliProbit, Gaussian, expected_log_likelihood, expected_terms, gauss_hermite, gaussian_expectation, hermite_rule
from provi.gp.multi import LMC
from provi.gp.natgrad import elbo, marginals, natgrad_step
from provi.gp.svgp import SVGP, moments, predict

__all__ = [
    "kernels",
    "likelihoods",
    "natgrad",
    "svgp",
    "multi",
    "SVGP",
    "LMC",
    "predict",
    "moments",
    "Gaussian",
    "BernoulliProbit",
    "expected_log_likelihood",
    "gauss_hermite",
    "gaussian_expectation",
    "hermite_rule",
    "natgrad_step",
    "elbo",
    "marginals",
    "expected_terms",
]
