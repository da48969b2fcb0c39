"""Natural-gradient Gaussian VI (`provi.optim.natgrad`): the precision step stays positive definite
for any Hessian estimate and has the ELBO's optimum as its fixed point; with exact
expectations it converges to a Gaussian target. Its fits of an exact 3-d Gaussian target (full-rank,
and the mean-field optimum) run with the Wasserstein steps' in test_wasserstein.py."""

import jax.numpy as jnp
import numpy as np

from provi.optim import natural_precision
from provi.optim.natural import _full_step, psd
from provi.optim.wasserstein import scale_tril_raw

MU = jnp.array([1.0, -2.0, 0.5])
COV = jnp.array([[2.0, 0.8, 0.3], [0.8, 1.0, -0.2], [0.3, -0.2, 0.5]])


def test_precision_step_is_positive_definite_for_any_symmetric_estimate():
    """(1 - r) P + r psd(H) is positive definite even for an indefinite H (as one noisy draw gives),
    where the step with H itself is not; psd(H) is H where H is positive semi-definite; H = P is a
    fixed point."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(5, 5))
    P = A @ A.T + 0.5 * np.eye(5)
    B = rng.normal(size=(5, 5))
    H = 10.0 * (B + B.T)  # far from P, with negative eigenvalues
    assert np.linalg.eigvalsh(H).min() < 0
    for r in (0.1, 0.5, 1.0):
        new = np.asarray(natural_precision(jnp.asarray(P), jnp.asarray(H), r))
        assert np.linalg.eigvalsh(new).min() > 0 or r == 1.0, r
        assert np.linalg.eigvalsh(new).min() > -1e-4
        assert np.linalg.eigvalsh((1 - r) * P + r * H).min() < 0  # the unprojected step would fail here
    lam, U = np.linalg.eigh(H)
    np.testing.assert_allclose(np.asarray(psd(jnp.asarray(H))), (U * np.maximum(lam, 0)) @ U.T, atol=1e-4)
    np.testing.assert_allclose(np.asarray(psd(jnp.asarray(P))), P, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(natural_precision(jnp.asarray(P), jnp.asarray(P), 0.7)), P, rtol=1e-5, atol=1e-5)


def test_step_with_exact_expectations_converges_to_a_gaussian_target():
    """V = (x - mu)' Q (x - mu) / 2: with the exact E[grad V] = Q (m - mu) and E[hess V] = Q fed in
    as the loss gradient the family sees (g_loc, g_raw), the step converges to N(mu, Q^-1)."""
    Q = jnp.linalg.inv(COV)
    loc, raw = jnp.zeros(3), jnp.zeros((3, 3))
    for _ in range(40):
        L = jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diag(raw)))
        g_L = jnp.tril(Q @ L) - jnp.diag(1.0 / jnp.diag(L))  # tril(E[grad V eps'] - L^-T)
        g_raw = jnp.tril(g_L, -1) + jnp.diag(jnp.diag(g_L) * jnp.diag(L))
        loc, raw = _full_step(loc, raw, Q @ (loc - MU), g_raw, 0.5)
    L = jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diag(raw)))
    np.testing.assert_allclose(np.asarray(loc), np.asarray(MU), atol=1e-4)
    np.testing.assert_allclose(np.asarray(L @ L.T), np.asarray(COV), atol=1e-4)
    np.testing.assert_allclose(np.asarray(scale_tril_raw(L)), np.asarray(raw), atol=1e-6)
