"""Variational Bayesian last layers: the bounds equal hand computations, the regression bound is tight
at the exact Bayesian linear-regression posterior (and training finds it), the classification bound
lies below Monte Carlo E_q log softmax, and training steps run under jit."""

import doctest

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special, stats

from provi.bdl import vbll
from provi.bdl.vbll import Classification, Regression

COVS = ["dense", "diagonal", "lowrank"]
RANK = 2


def _rank(cov):
    return RANK if cov == "lowrank" else None


def _np_cov(cov, log_diag, factor):
    """Row covariance S from its parameters, by hand (log_diag (d,), factor as stored)."""
    if cov == "dense":
        lower = np.tril(factor, -1) + np.diag(np.exp(log_diag))
        return lower @ lower.T
    out = np.diag(np.exp(2 * log_diag))
    return out + factor @ factor.T if cov == "lowrank" else out


def _np_kl(mean_row, s, prior_scale):
    d = mean_row.shape[0]
    p2 = prior_scale**2
    return 0.5 * (np.trace(s) / p2 + mean_row @ mean_row / p2 - d + d * np.log(p2) - np.linalg.slogdet(s)[1])


def _factor(rng, cov, lead, d):
    if cov == "diagonal":
        return None
    return 0.4 * rng.normal(size=lead + ((d, d) if cov == "dense" else (d, RANK)))


def _set(head, **values):
    """Replace fields of a head by float32 copies of the given numpy arrays (None: leave as is)."""
    for name, value in values.items():
        if value is not None:
            head = eqx.tree_at(lambda h, n=name: getattr(h, n), head, jnp.asarray(value, jnp.float32))
    return head


# ---------------------------------------------------------------- regression


@pytest.mark.parametrize("wishart_scale", [None, 0.3])
@pytest.mark.parametrize("cov", COVS)
def test_regression_loss_equals_hand_computation(cov, wishart_scale):
    rng = np.random.default_rng(0)
    d, k, n, n_data, prior, dof, weight = 4, 2, 6, 50, 1.7, 2.5, 0.7
    head = Regression(d, k, key=jax.random.PRNGKey(0), prior_scale=prior, wishart_scale=wishart_scale, dof=dof,
                      cov=cov, rank=_rank(cov), regularization_weight=weight)
    mean, log_diag = rng.normal(size=(k, d)), rng.uniform(-1.0, 0.0, size=d)
    factor, log_sigma = _factor(rng, cov, (), d), rng.uniform(-0.5, 0.3, size=k)
    head = _set(head, mean=mean, log_diag=log_diag, factor=factor, noise_log_scale=log_sigma)
    phi, y = rng.normal(size=(n, d)), rng.normal(size=(n, k))

    s, sig2 = _np_cov(cov, log_diag, factor), np.exp(2 * log_sigma)
    per_point = []
    for i in range(n):
        mu = mean @ phi[i]
        log_lik = np.sum(-0.5 * np.log(2 * np.pi * sig2) - 0.5 * (y[i] - mu) ** 2 / sig2)
        per_point.append(-log_lik + 0.5 * (phi[i] @ s @ phi[i]) * np.sum(1 / sig2))
    kl = sum(_np_kl(mean[j], s, prior) for j in range(k))
    log_prior = 0.0
    if wishart_scale is not None:  # product of inverse-gamma densities in sigma_k^2, unnormalised
        alpha, beta = (dof + k - 1) / 2, wishart_scale / 2
        log_prior = np.sum(-(alpha + 1) * np.log(sig2) - beta / sig2)
    expected = np.mean(per_point) + weight * (kl - log_prior) / n_data

    loss = eqx.filter_jit(lambda h: h.loss(phi, y, n_data))(head)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(head.kl(), kl, rtol=1e-5)
    np.testing.assert_allclose(head.covariance(), s, rtol=1e-5, atol=1e-6)

    mean_pred, var_pred = head.predictive(phi)
    quad = np.einsum("ni,ij,nj->n", phi, s, phi)
    np.testing.assert_allclose(mean_pred, phi @ mean.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var_pred, quad[:, None] + sig2, rtol=1e-5)
    hand_lp = stats.norm.logpdf(y, phi @ mean.T, np.sqrt(quad[:, None] + sig2)).sum(-1)
    np.testing.assert_allclose(head.predictive_log_prob(phi, y), hand_lp, rtol=1e-5)


def test_noise_prior_is_inverse_wishart_up_to_its_normaliser():
    k, dof, psi = 3, 4.5, 0.8
    head = Regression(2, k, key=jax.random.PRNGKey(0), wishart_scale=psi, dof=dof)
    log_z = 0.5 * dof * k * np.log(2) + special.multigammaln(dof / 2, k) - 0.5 * dof * k * np.log(psi)
    for log_sigma in ([0.1, -0.4, 0.3], [-1.0, 0.5, 0.0]):
        sigma2 = np.exp(2 * np.array(log_sigma))
        ours = _set(head, noise_log_scale=np.array(log_sigma)).noise_log_prior()
        exact = stats.invwishart.logpdf(np.diag(sigma2), df=dof, scale=psi * np.eye(k))
        np.testing.assert_allclose(ours - log_z, exact, rtol=1e-5)


def _blr_problem():
    """Fixed features and targets, k = 2 outputs with one known noise variance, and the exact posterior."""
    rng = np.random.default_rng(1)
    n, d, k, sigma, prior = 25, 3, 2, 0.5, 1.5
    phi = rng.normal(size=(n, d))
    y = phi @ rng.normal(size=(d, k)) + sigma * rng.normal(size=(n, k))
    precision = phi.T @ phi / sigma**2 + np.eye(d) / prior**2
    post_cov = np.linalg.inv(precision)
    post_mean = (post_cov @ phi.T @ y / sigma**2).T  # (k, d)
    marginal = prior**2 * phi @ phi.T + sigma**2 * np.eye(n)
    log_evidence = sum(stats.multivariate_normal.logpdf(y[:, j], np.zeros(n), marginal) for j in range(k))
    phi_new = rng.normal(size=(5, d))
    exact_var = np.einsum("ni,ij,nj->n", phi_new, post_cov, phi_new) + sigma**2
    head = Regression(d, k, key=jax.random.PRNGKey(2), prior_scale=prior, wishart_scale=None, cov="dense")
    head = _set(head, noise_log_scale=np.full(k, np.log(sigma)))
    return head, phi, y, post_mean, post_cov, log_evidence, phi_new, phi_new @ post_mean.T, exact_var


def _q_params(head):
    return head.mean, head.log_diag, head.factor


def _with_q(head, params):
    return eqx.tree_at(_q_params, head, params)


def test_regression_bound_is_tight_at_the_exact_posterior():
    head, phi, y, post_mean, post_cov, log_evidence, phi_new, exact_mean, exact_var = _blr_problem()
    n = phi.shape[0]
    lower = np.linalg.cholesky(post_cov)
    at_post = _set(head, mean=post_mean, log_diag=np.log(np.diag(lower)), factor=lower)

    def loss(params):
        return _with_q(head, params).loss(phi, y, n)

    value, grads = eqx.filter_jit(jax.value_and_grad(loss))(_q_params(at_post))
    # The ELBO is at most log p(Y) for every q; equality makes q = the exact posterior its maximiser.
    np.testing.assert_allclose(-n * value, log_evidence, rtol=1e-5)
    for g in grads:
        np.testing.assert_allclose(g, 0.0, atol=2e-5)
    assert -n * eqx.filter_jit(loss)(_q_params(head)) < log_evidence - 1.0  # the initial q is worse
    mean, var = at_post.predictive(phi_new)
    np.testing.assert_allclose(mean, exact_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var, np.repeat(exact_var[:, None], 2, 1), rtol=1e-5)


def test_minimising_the_regression_bound_recovers_the_exact_posterior():
    head, phi, y, post_mean, post_cov, _, phi_new, exact_mean, exact_var = _blr_problem()
    n = phi.shape[0]

    def loss(params):
        return _with_q(head, params).loss(phi, y, n)

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    @jax.jit
    def fit(params):
        def step(_, carry):
            params, state = carry
            value, grad = value_and_grad(params, state=state)
            updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
            return optax.apply_updates(params, updates), state

        return jax.lax.fori_loop(0, 150, step, (params, opt.init(params)))[0]

    fitted = _with_q(head, fit(_q_params(head)))
    np.testing.assert_allclose(fitted.mean, post_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fitted.covariance(), post_cov, rtol=2e-5, atol=1e-7)
    mean, var = fitted.predictive(phi_new)
    np.testing.assert_allclose(mean, exact_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, np.repeat(exact_var[:, None], 2, 1), rtol=1e-5)


# ---------------------------------------------------------------- classification


def _classifier(cov, seed=0, scale=0.4):
    rng = np.random.default_rng(seed)
    d, k = 4, 3
    head = Classification(d, k, key=jax.random.PRNGKey(seed), prior_scale=1.3, cov=cov, rank=_rank(cov),
                          regularization_weight=0.6)
    mean, log_diag = rng.normal(size=(k, d)), rng.uniform(-1.0, 0.0, size=(k, d)) + np.log(scale / 0.4)
    factor = _factor(rng, cov, (k,), d)
    head = _set(head, mean=mean, log_diag=log_diag, factor=factor)
    covs = np.stack([_np_cov(cov, log_diag[j], None if factor is None else factor[j]) for j in range(k)])
    phi, y = rng.normal(size=(5, d)), np.array([0, 2, 1, 1, 0])
    mu, var = phi @ mean.T, np.einsum("ni,kij,nj->nk", phi, covs, phi)
    return head, mean, covs, phi, y, mu, var


@pytest.mark.parametrize("cov", COVS)
def test_classification_loss_equals_hand_computation(cov):
    head, mean, covs, phi, y, mu, var = _classifier(cov)
    n_data = 40
    bound = np.array([mu[i, y[i]] - special.logsumexp(mu[i] + 0.5 * var[i]) for i in range(len(y))])
    kl = sum(_np_kl(mean[j], covs[j], 1.3) for j in range(mean.shape[0]))
    expected = -bound.mean() + 0.6 * kl / n_data
    np.testing.assert_allclose(eqx.filter_jit(lambda h: h.loss(phi, y, n_data))(head), expected, rtol=1e-5)
    np.testing.assert_allclose(head.log_likelihood_bound(phi, y), bound, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head.covariance(), covs, rtol=1e-5, atol=1e-6)
    m, v = head.logit_moments(phi)
    np.testing.assert_allclose(m, mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v, var, rtol=1e-5)


@pytest.mark.parametrize("cov", COVS)
def test_classification_bound_lies_below_monte_carlo_expected_log_softmax(cov):
    head, mean, covs, phi, y, _, _ = _classifier(cov, seed=3, scale=1.0)
    rng = np.random.default_rng(4)
    draws = 40_000
    chol = np.linalg.cholesky(covs)  # (k, d, d)
    w = mean + np.einsum("kij,skj->ski", chol, rng.normal(size=(draws,) + mean.shape))  # draws of W from q
    log_sm = special.log_softmax(np.einsum("ski,ni->snk", w, phi), axis=-1)[:, np.arange(len(y)), y]
    mc, se = log_sm.mean(0), log_sm.std(0) / np.sqrt(draws)
    bound = np.asarray(head.log_likelihood_bound(phi, y))
    assert np.all(mc >= bound - 4 * se), (mc, bound, se)
    assert np.all(mc - bound > 4 * se)  # with this much weight uncertainty the Jensen gap is visible


def test_classification_predictive_averages_softmax_over_draws():
    head, _, _, phi, _, mu, var = _classifier("lowrank")
    key, num = jax.random.PRNGKey(5), 16
    probs = head.predictive(phi, key=key, num_samples=num)
    z = np.asarray(jax.random.normal(key, (num,) + mu.shape, jnp.float32))
    hand = np.zeros_like(mu)
    for s in range(num):
        for i in range(mu.shape[0]):
            hand[i] += special.softmax(mu[i] + np.sqrt(var[i]) * z[s, i]) / num
    np.testing.assert_allclose(probs, hand, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head.predictive(phi), special.softmax(mu, axis=-1), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- training, validation, docs


@pytest.mark.parametrize("cov", COVS)
def test_a_jitted_training_step_reduces_the_loss(cov):
    rng = np.random.default_rng(6)
    n, d = 64, 5
    phi = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
    y_reg = phi @ jnp.asarray(rng.normal(size=(d, 2)), jnp.float32) + 0.1
    y_cls = jnp.argmax(phi[:, :3], axis=-1)
    heads = (Regression(d, 2, key=jax.random.PRNGKey(0), cov=cov, rank=_rank(cov)),
             Classification(d, 3, key=jax.random.PRNGKey(1), cov=cov, rank=_rank(cov)))
    opt = optax.adam(0.05)

    @eqx.filter_jit
    def train(heads):
        def loss(hs):
            return hs[0].loss(phi, y_reg, 1000) + hs[1].loss(phi, y_cls, 1000)

        def step(carry, _):
            hs, state = carry
            value, grads = eqx.filter_value_and_grad(loss)(hs)
            updates, state = opt.update(grads, state, hs)
            return (eqx.apply_updates(hs, updates), state), value

        (hs, _), values = jax.lax.scan(step, (heads, opt.init(eqx.filter(heads, eqx.is_array))), length=40)
        return values[0], loss(hs)

    first, last = train(heads)
    assert np.isfinite(last) and last < 0.5 * first


def test_invalid_arguments_are_named():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="cov must be one of"):
        Regression(3, 1, key=key, cov="full")
    with pytest.raises(ValueError, match="needs rank"):
        Classification(3, 2, key=key, cov="lowrank")
    with pytest.raises(ValueError, match="rank applies only"):
        Regression(3, 1, key=key, cov="dense", rank=2)
    with pytest.raises(ValueError, match="in_features"):
        Regression(0, 1, key=key)
    with pytest.raises(ValueError, match="prior_scale"):
        Classification(3, 2, key=key, prior_scale=-1.0)
    head, clf = Regression(3, 2, key=key, cov="diagonal"), Classification(3, 2, key=key, cov="diagonal")
    with pytest.raises(ValueError, match=r"phi must have shape \(n, 3\)"):
        head.predictive(jnp.ones((4, 5)))
    with pytest.raises(ValueError, match=r"y must have shape \(n, 2\)"):
        head.loss(jnp.ones((4, 3)), jnp.ones((4,)), 10)
    with pytest.raises(ValueError, match="n_data"):
        head.loss(jnp.ones((4, 3)), jnp.ones((4, 2)), 0)
    with pytest.raises(TypeError, match="integer class labels"):
        clf.loss(jnp.ones((4, 3)), jnp.zeros((4,)), 10)
    with pytest.raises(ValueError, match="labels of shape"):
        clf.loss(jnp.ones((4, 3)), jnp.zeros((4, 2), jnp.int32), 10)


def test_module_docstring_example_runs():
    result = doctest.testmod(vbll, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
