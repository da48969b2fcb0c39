"""Variational Bayesian last layers (Harrison, Willes & Snoek, ICLR 2024).

A VBLL head replaces a network's last linear layer by a Bayesian linear model on the features
`phi`, with a Gaussian variational posterior over its weights `W` (rows `W[k]`, each in R^d),
trained by a deterministic (sampling-free) bound on the evidence. Every method takes a batch:
features `phi` of shape (n, d); targets of shape (n, k) or (n,) (regression, k = 1) or integer
labels of shape (n,) (classification). `N` below is the size of the whole training set.

Covariance of a weight row (`cov`), with `s = exp(log_diag)`:

- "dense":    S = L L^T, L lower-triangular: strict lower part of `factor`, diagonal `s`;
- "diagonal": S = diag(s^2)  (`factor` is None);
- "lowrank":  S = diag(s^2) + U U^T, U = `factor` of shape (d, rank).

Prior: every row W[k] ~ N(0, prior_scale^2 I), so per row
KL(N(m, S) || prior) = 0.5 [tr S / p^2 + |m|^2 / p^2 - d + d log p^2 - log det S], p = prior_scale.

`Regression`: y = W phi + eps, eps ~ N(0, Sigma), Sigma = diag(sigma^2), sigma = exp(noise_log_scale)
(a point estimate). q(W): rows independent, W[k] ~ N(W_bar[k], S) with one S shared by the rows.
The expected log-likelihood is exact (no bound is needed):
    E_q log N(y | W phi, Sigma) = log N(y | W_bar phi, Sigma) - 0.5 phi^T S phi tr(Sigma^{-1}),
and `loss` = - mean_i E_q log N(y_i | W phi_i, Sigma) + w (KL(q || p) - log p(Sigma)) / N,
w = `regularization_weight` (1 for the ELBO). The noise prior, unless `wishart_scale` is None,
is the inverse-Wishart IW(Sigma | dof, wishart_scale I) evaluated at the diagonal Sigma, without
its normalising constant: log p(Sigma) = -(dof + k + 1)/2 log det Sigma - wishart_scale/2 tr(Sigma^{-1}),
equal up to a constant to sum_k log InvGamma(sigma_k^2 | (dof + k - 1)/2, wishart_scale/2).
With `wishart_scale=None` and w = 1, N * loss on the full data set is the negative ELBO, which
equals -log p(Y) when q is the exact posterior (known, equal noise variances).
Predictive: y | phi ~ N(W_bar phi, phi^T S phi + sigma_k^2) for each output k.

`Classification`: logits = W phi, q(W): rows independent, W[k] ~ N(W_bar[k], S_k) (one S_k per
class), so logit k ~ N(mu_k, v_k), mu_k = W_bar[k]^T phi, v_k = phi^T S_k phi. By Jensen's
inequality, E log sum_j exp(logit_j) <= log sum_j E exp(logit_j), hence the lower bound
    E_q log softmax(W phi)_y >= mu_y - logsumexp_j(mu_j + v_j / 2),
and `loss` = mean_i [logsumexp_j(mu_ij + v_ij / 2) - mu_{i y_i}] + w KL(q || p) / N.
Predictive: Monte Carlo mean of softmax(mu + sqrt(v) * z) over draws z ~ N(0, I) of the logits
(per input, the same law as drawing W), or the plug-in softmax(mu) when no key is given.

>>> import jax, jax.numpy as jnp
>>> head = Regression(3, 1, key=jax.random.PRNGKey(0))
>>> phi, y = jnp.ones((5, 3)), jnp.zeros((5, 1))
>>> head.loss(phi, y, n_data=100).shape
()
>>> mean, var = head.predictive(phi)
>>> mean.shape, var.shape
((5, 1), (5, 1))
>>> clf = Classification(3, 4, key=jax.random.PRNGKey(1), cov="diagonal")
>>> clf.predictive(phi, key=jax.random.PRNGKey(2), num_samples=8).shape
(5, 4)
"""

import math
import numbers

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["Regression", "Classification"]

_COVS = ("dense", "diagonal", "lowrank")
_LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------- validation


def _check_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_positive(name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not (value >= 0 if allow_zero else value > 0) or not math.isfinite(value):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {kind} number, got {value!r}")
    return float(value)


def _check_cov(cov, rank, d):
    if cov not in _COVS:
        raise ValueError(f"cov must be one of {_COVS}, got {cov!r}")
    if cov == "lowrank":
        if rank is None:
            raise ValueError("cov='lowrank' needs rank: pass rank=r, a positive integer (the columns of U)")
        return _check_int("rank", rank)
    if rank is not None:
        raise ValueError(f"rank applies only to cov='lowrank'; drop rank or pass cov='lowrank' (got cov={cov!r})")
    return None


def _check_phi(phi, d):
    phi = jnp.asarray(phi)
    if phi.ndim != 2 or phi.shape[1] != d:
        raise ValueError(f"phi must have shape (n, {d}) (a batch of in_features={d} features), got {phi.shape}")
    return phi


def _check_n_data(n_data):
    if isinstance(n_data, numbers.Number):
        _check_positive("n_data", n_data)
    return n_data


# ------------------------------------------------- Gaussian rows: S from its parameters
# The covariance parameters carry leading dims `lead`: () for one shared S, (k,) for one per row.


def _init_cov(key, cov, rank, lead, d, prior_scale):
    log_diag = jnp.full(lead + (d,), math.log(prior_scale) - 0.5 * math.log(d))
    if cov == "dense":
        factor = jnp.zeros(lead + (d, d))
    elif cov == "lowrank":  # U = 0 is a stationary point of the loss in U: start off it
        factor = 1e-2 * prior_scale / math.sqrt(d) * jax.random.normal(key, lead + (d, rank))
    else:
        factor = None
    return log_diag, factor


def _tril(log_diag, factor):
    d = log_diag.shape[-1]
    return jnp.tril(factor, -1) + jnp.exp(log_diag)[..., None] * jnp.eye(d, dtype=log_diag.dtype)


def _quad(cov, log_diag, factor, phi):
    """phi_i^T S phi_i, shape (n,) + lead."""
    if cov == "dense":
        v = jnp.einsum("...ji,nj->n...i", _tril(log_diag, factor), phi)  # L^T phi
        return jnp.sum(v**2, axis=-1)
    out = jnp.einsum("...i,ni->n...", jnp.exp(2.0 * log_diag), phi**2)
    if cov == "lowrank":
        out = out + jnp.sum(jnp.einsum("...ir,ni->n...r", factor, phi) ** 2, axis=-1)
    return out


def _trace(cov, log_diag, factor):
    if cov == "dense":
        return jnp.sum(_tril(log_diag, factor) ** 2, axis=(-2, -1))
    out = jnp.sum(jnp.exp(2.0 * log_diag), axis=-1)
    return out + jnp.sum(factor**2, axis=(-2, -1)) if cov == "lowrank" else out


def _logdet(cov, log_diag, factor):
    out = 2.0 * jnp.sum(log_diag, axis=-1)
    if cov == "lowrank":  # det(D + U U^T) = det D det(I + U^T D^{-1} U)
        scaled = factor * jnp.exp(-log_diag)[..., None]
        inner = jnp.eye(factor.shape[-1], dtype=factor.dtype) + jnp.swapaxes(scaled, -1, -2) @ scaled
        out = out + 2.0 * jnp.sum(jnp.log(jnp.diagonal(jnp.linalg.cholesky(inner), axis1=-2, axis2=-1)), axis=-1)
    return out


def _dense(cov, log_diag, factor):
    if cov == "dense":
        lower = _tril(log_diag, factor)
        return lower @ jnp.swapaxes(lower, -1, -2)
    out = jnp.exp(2.0 * log_diag)[..., None] * jnp.eye(log_diag.shape[-1], dtype=log_diag.dtype)
    return out + factor @ jnp.swapaxes(factor, -1, -2) if cov == "lowrank" else out


def _kl(mean, cov, log_diag, factor, prior_scale):
    """sum over rows k of KL(N(mean[k], S_k) || N(0, prior_scale^2 I))."""
    k, d = mean.shape
    p2 = prior_scale**2
    per_row = 0.5 * (_trace(cov, log_diag, factor) / p2 - _logdet(cov, log_diag, factor) + d * (math.log(p2) - 1.0))
    return 0.5 * jnp.sum(mean**2) / p2 + jnp.sum(jnp.broadcast_to(per_row, (k,)))


# ---------------------------------------------------------------- heads


class Regression(eqx.Module):
    """VBLL regression head: y = W phi + eps, eps ~ N(0, diag(sigma^2)), q(W) rows N(W_bar[k], S).

    Fields: `mean` W_bar (k, d); `log_diag` (d,) and `factor` ((d, d) dense, (d, rank) low-rank,
    None diagonal) give the shared S (see the module docstring); `noise_log_scale` log sigma (k,).
    `prior_scale` is the prior standard deviation of each weight; `wishart_scale=None` drops the
    noise prior; `regularization_weight` multiplies the KL and noise-prior terms (1: the ELBO).
    """

    mean: jax.Array
    log_diag: jax.Array
    factor: jax.Array | None
    noise_log_scale: jax.Array
    cov: str = eqx.field(static=True)
    prior_scale: float = eqx.field(static=True)
    wishart_scale: float | None = eqx.field(static=True)
    dof: float = eqx.field(static=True)
    regularization_weight: float = eqx.field(static=True)

    def __init__(self, in_features, out_features, *, key, prior_scale=1.0, wishart_scale=1e-2, dof=1.0,
                 cov="dense", rank=None, regularization_weight=1.0):
        d, k = _check_int("in_features", in_features), _check_int("out_features", out_features)
        rank = _check_cov(cov, rank, d)
        self.prior_scale = _check_positive("prior_scale", prior_scale)
        self.wishart_scale = None if wishart_scale is None else _check_positive("wishart_scale", wishart_scale)
        self.dof = _check_positive("dof", dof)
        self.regularization_weight = _check_positive("regularization_weight", regularization_weight, allow_zero=True)
        self.cov = cov
        k_mean, k_cov = jax.random.split(key)
        self.mean = jax.random.normal(k_mean, (k, d)) / math.sqrt(d)
        self.log_diag, self.factor = _init_cov(k_cov, cov, rank, (), d, self.prior_scale)
        self.noise_log_scale = jnp.zeros((k,))

    @property
    def in_features(self) -> int:
        return self.mean.shape[1]

    @property
    def out_features(self) -> int:
        return self.mean.shape[0]

    @property
    def noise_variance(self) -> jax.Array:
        """sigma^2, shape (k,)."""
        return jnp.exp(2.0 * self.noise_log_scale)

    def covariance(self) -> jax.Array:
        """The shared row covariance S, shape (d, d)."""
        return _dense(self.cov, self.log_diag, self.factor)

    def kl(self) -> jax.Array:
        """KL(q(W) || p(W)), summed over the k rows."""
        return _kl(self.mean, self.cov, self.log_diag, self.factor, self.prior_scale)

    def noise_log_prior(self) -> jax.Array:
        """Unnormalised inverse-Wishart log density of Sigma (0 when `wishart_scale` is None)."""
        if self.wishart_scale is None:
            return jnp.zeros((), self.noise_log_scale.dtype)
        k = self.out_features
        log_det = 2.0 * jnp.sum(self.noise_log_scale)
        return -0.5 * (self.dof + k + 1.0) * log_det - 0.5 * self.wishart_scale * jnp.sum(1.0 / self.noise_variance)

    def _targets(self, phi, y):
        phi = _check_phi(phi, self.in_features)
        y = jnp.asarray(y)
        k = self.out_features
        if y.ndim == 1 and k == 1:
            y = y[:, None]
        if y.shape != (phi.shape[0], k):
            raise ValueError(f"y must have shape (n, {k}) (or (n,) when out_features=1) with n={phi.shape[0]} "
                             f"as phi, got {y.shape}")
        return phi, y

    def expected_log_likelihood(self, phi, y) -> jax.Array:
        """E_q log N(y_i | W phi_i, Sigma) for each input, shape (n,) (exact, summed over outputs)."""
        phi, y = self._targets(phi, y)
        var = self.noise_variance
        resid = y - phi @ self.mean.T
        log_lik = -0.5 * jnp.sum(_LOG_2PI + 2.0 * self.noise_log_scale + resid**2 / var, axis=-1)
        return log_lik - 0.5 * _quad(self.cov, self.log_diag, self.factor, phi) * jnp.sum(1.0 / var)

    def loss(self, phi, y, n_data) -> jax.Array:
        """Negative ELBO per data point: -mean_i E_q log-lik + w (KL - log p(Sigma)) / n_data."""
        n_data = _check_n_data(n_data)
        reg = self.kl() - self.noise_log_prior()
        return -jnp.mean(self.expected_log_likelihood(phi, y)) + self.regularization_weight * reg / n_data

    def predictive(self, phi) -> tuple[jax.Array, jax.Array]:
        """Mean W_bar phi and variance phi^T S phi + sigma^2 of the Gaussian predictive, each (n, k)."""
        phi = _check_phi(phi, self.in_features)
        mean = phi @ self.mean.T
        return mean, _quad(self.cov, self.log_diag, self.factor, phi)[:, None] + self.noise_variance

    def predictive_log_prob(self, phi, y) -> jax.Array:
        """log p(y_i | phi_i) under the predictive, summed over outputs, shape (n,)."""
        phi, y = self._targets(phi, y)
        mean, var = self.predictive(phi)
        return -0.5 * jnp.sum(_LOG_2PI + jnp.log(var) + (y - mean) ** 2 / var, axis=-1)


class Classification(eqx.Module):
    """Discriminative VBLL classifier: logits = W phi, q(W) rows N(W_bar[k], S_k), one S_k per class.

    Fields: `mean` W_bar (k, d); `log_diag` (k, d) and `factor` ((k, d, d) dense, (k, d, rank)
    low-rank, None diagonal) give the S_k. `prior_scale` is the prior standard deviation of each
    weight; `regularization_weight` multiplies the KL term (1: the bound on the ELBO).
    """

    mean: jax.Array
    log_diag: jax.Array
    factor: jax.Array | None
    cov: str = eqx.field(static=True)
    prior_scale: float = eqx.field(static=True)
    regularization_weight: float = eqx.field(static=True)

    def __init__(self, in_features, num_classes, *, key, prior_scale=1.0, cov="dense", rank=None,
                 regularization_weight=1.0):
        d, k = _check_int("in_features", in_features), _check_int("num_classes", num_classes)
        rank = _check_cov(cov, rank, d)
        self.prior_scale = _check_positive("prior_scale", prior_scale)
        self.regularization_weight = _check_positive("regularization_weight", regularization_weight, allow_zero=True)
        self.cov = cov
        k_mean, k_cov = jax.random.split(key)
        self.mean = jax.random.normal(k_mean, (k, d)) / math.sqrt(d)
        self.log_diag, self.factor = _init_cov(k_cov, cov, rank, (k,), d, self.prior_scale)

    @property
    def in_features(self) -> int:
        return self.mean.shape[1]

    @property
    def num_classes(self) -> int:
        return self.mean.shape[0]

    def covariance(self) -> jax.Array:
        """The row covariances S_k, shape (k, d, d)."""
        return _dense(self.cov, self.log_diag, self.factor)

    def kl(self) -> jax.Array:
        """KL(q(W) || p(W)), summed over the k rows."""
        return _kl(self.mean, self.cov, self.log_diag, self.factor, self.prior_scale)

    def logit_moments(self, phi) -> tuple[jax.Array, jax.Array]:
        """Mean W_bar[k]^T phi_i and variance phi_i^T S_k phi_i of each logit under q, each (n, k)."""
        phi = _check_phi(phi, self.in_features)
        return phi @ self.mean.T, _quad(self.cov, self.log_diag, self.factor, phi)

    def log_likelihood_bound(self, phi, y) -> jax.Array:
        """Jensen lower bound mu_{y_i} - logsumexp_j(mu_j + v_j / 2) on E_q log softmax, shape (n,)."""
        phi = _check_phi(phi, self.in_features)
        y = jnp.asarray(y)
        if y.shape != (phi.shape[0],):
            raise ValueError(f"y must be integer labels of shape (n,) with n={phi.shape[0]} as phi, got {y.shape}")
        if not jnp.issubdtype(y.dtype, jnp.integer):
            raise TypeError(f"y must hold integer class labels in [0, {self.num_classes}), got dtype {y.dtype}")
        mu, var = self.logit_moments(phi)
        picked = jnp.take_along_axis(mu, y[:, None], axis=-1)[:, 0]
        return picked - jax.nn.logsumexp(mu + 0.5 * var, axis=-1)

    def loss(self, phi, y, n_data) -> jax.Array:
        """Negative bound per data point: -mean_i log_likelihood_bound + w KL / n_data."""
        n_data = _check_n_data(n_data)
        return -jnp.mean(self.log_likelihood_bound(phi, y)) + self.regularization_weight * self.kl() / n_data

    def predictive(self, phi, key=None, num_samples=100) -> jax.Array:
        """Predictive class probabilities, shape (n, k).

        With `key`: the mean over `num_samples` draws of softmax(mu + sqrt(v) * z), z of shape
        (num_samples, n, k) drawn by `jax.random.normal(key, ...)`. Without: softmax(mu) (plug-in).
        """
        mu, var = self.logit_moments(phi)
        if key is None:
            return jax.nn.softmax(mu, axis=-1)
        num_samples = _check_int("num_samples", num_samples)
        z = jax.random.normal(key, (num_samples,) + mu.shape, mu.dtype)
        return jnp.mean(jax.nn.softmax(mu + jnp.sqrt(var) * z, axis=-1), axis=0)
