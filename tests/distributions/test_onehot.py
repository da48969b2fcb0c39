"""One-hot categoricals and their Concrete relaxation: the distributions against exact oracles,
the Gumbel-softmax estimator on them, and full fits against an exact posterior."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from estimator_cases import gradient_draws

import provi
from provi.distributions import OneHotCategorical, RelaxedOneHotCategorical
from provi.errors import EstimatorError
from provi.estimators import Enumerate, GumbelSoftmax, LeaveOneOut, Reinforce, applicable, default_estimator

LOGITS = jnp.array([0.2, -0.5, 1.0, 0.3])


def test_one_hot_log_prob_sample_and_support_agree_with_categorical():
    d, c = OneHotCategorical(logits=LOGITS), dist.Categorical(logits=LOGITS)
    np.testing.assert_allclose(d.log_prob(jnp.eye(4)), c.log_prob(jnp.arange(4)), rtol=1e-6)
    np.testing.assert_allclose(OneHotCategorical(probs=c.probs).log_prob(jnp.eye(4)), c.log_prob(jnp.arange(4)), rtol=1e-5)
    n = 40_000
    y = d.sample(jax.random.PRNGKey(0), (n,))
    assert y.shape == (n, 4) and bool(jnp.all(d.support(y)))
    se = np.sqrt(c.probs * (1 - c.probs) / n)
    assert np.all(np.abs(np.asarray(y.mean(0)) - c.probs) < 4 * se)
    assert not bool(d.support(jnp.array([0.5, 0.5, 0.0, 0.0])))
    assert OneHotCategorical(logits=jnp.zeros((3, 4))).enumerate_support().shape == (4, 3, 4)
    np.testing.assert_allclose(d.entropy(), c.entropy(), rtol=1e-6)
    q = OneHotCategorical(logits=jnp.zeros(4))
    exact = jnp.sum(c.probs * (jnp.log(c.probs) - jnp.log(0.25)))
    np.testing.assert_allclose(dist.kl_divergence(d, q), exact, rtol=1e-5)
    with pytest.raises(ValueError, match="exactly one"):
        OneHotCategorical()


def test_concrete_density_is_the_binary_concrete_for_two_classes():
    r = RelaxedOneHotCategorical(0.7, logits=jnp.array([0.3, 1.1]))
    y = jnp.linspace(0.01, 0.99, 50)
    np.testing.assert_allclose(
        r.log_prob(jnp.stack([1 - y, y], -1)), dist.RelaxedBernoulliLogits(0.7, jnp.array(0.8)).log_prob(y), rtol=1e-4, atol=1e-5
    )


def test_concrete_density_integrates_to_one_and_rounds_to_the_categorical():
    r = RelaxedOneHotCategorical(1.3, logits=LOGITS[:3])
    m = 800  # midpoint rule on the triangle y0 + y1 < 1 (the density is w.r.t. its Lebesgue measure)
    g = (jnp.arange(m) + 0.5) / m
    y0, y1 = jnp.meshgrid(g, g, indexing="ij")
    inside = y0 + y1 < 1
    y = jnp.where(inside[..., None], jnp.stack([y0, y1, 1 - y0 - y1], -1), 1 / 3)
    total = jnp.sum(jnp.where(inside, jnp.exp(r.log_prob(y)), 0.0)) / m**2
    assert abs(float(total) - 1) < 0.01, total
    n = 40_000  # Maddison et al. (2017), prop. 1(a): P(argmax y = k) = p_k
    k = jnp.argmax(r.sample(jax.random.PRNGKey(1), (n,)), -1)
    p = jax.nn.softmax(LOGITS[:3])
    freq = jnp.bincount(k, length=3) / n
    assert np.all(np.abs(np.asarray(freq - p)) < 4 * np.sqrt(p * (1 - p) / n))


# --- Gumbel-softmax on one-hot sites: two classes reduce to the binary relaxation --------------

_U = (jnp.arange(20000, dtype=jnp.float32) + 0.5) / 20000  # quadrature over the logistic noise


def _binary_relaxed_oracle(t, tau, f):
    x = t[0] + jnp.log(_U) - jnp.log1p(-_U)
    return jnp.mean(f(jax.nn.sigmoid(x / tau)))


def _two_class(t):
    return OneHotCategorical(logits=jnp.stack([jnp.zeros_like(t[0]), t[0]]))


@pytest.mark.parametrize("straight_through", [False, True])
def test_gumbel_softmax_on_one_hot_matches_the_binary_concrete_gradient(straight_through):
    """Two classes: softmax((l + G)/tau)[1] = sigmoid((l1 - l0 + L)/tau), L logistic. The relaxed
    estimate is unbiased for the relaxed objective's gradient; straight-through on a linear f has
    the same backward pass."""
    tau, n = 0.8, 3000
    f = (lambda z: 2.0 * z[..., 1]) if straight_through else (lambda z: (z[..., 1] - 0.5) ** 2)
    draws = gradient_draws(_two_class, [0.4], GumbelSoftmax(tau, straight_through=straight_through), f, n=n, seed=6)
    exact = jax.grad(_binary_relaxed_oracle)(jnp.array([0.4]), tau, (lambda y: 2.0 * y) if straight_through else (lambda y: (y - 0.5) ** 2))
    se = draws.std(0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(draws.mean(0) - np.asarray(exact)) < 4.5 * se + 1e-3), (draws.mean(0), exact, se)


def test_gumbel_softmax_refuses_integer_categoricals_and_points_to_one_hot():
    def model():
        numpyro.sample("k", dist.Categorical(logits=LOGITS))

    def guide():
        numpyro.sample("k", dist.Categorical(logits=numpyro.param("l", LOGITS)), infer={"estimator": GumbelSoftmax()})

    with pytest.raises(EstimatorError, match="OneHotCategorical") as e:
        provi.fit(model, guide=guide, steps=1, progress=False)
    assert "'k'" in str(e.value)


def test_one_hot_defaults_and_applicable():
    d = OneHotCategorical(logits=LOGITS)
    assert applicable(d) == ["Reinforce", "Enumerate", "GumbelSoftmax"]
    assert default_estimator(d, jnp.zeros((10, 4))) == Enumerate()  # 10 coordinates x 4 values
    assert default_estimator(d, jnp.zeros((100, 4))) == Reinforce(LeaveOneOut())


# --- full fits: a one-hot class whose exact posterior is known -------------------------------

Y = jnp.array([0.8, 1.3, -0.2, 0.9])
MEANS = jnp.array([-2.0, 0.0, 1.5])
PRIOR = jnp.array([0.5, 0.3, 0.2])


def _model(y):
    c = numpyro.sample("c", OneHotCategorical(probs=PRIOR))
    numpyro.sample("y", dist.Normal(c @ MEANS, 1.5), obs=y)


def _guide(y):
    numpyro.sample("c", OneHotCategorical(logits=numpyro.param("l", jnp.zeros(3))))


def _exact_posterior():
    lp = jnp.log(PRIOR) + jnp.array([jnp.sum(dist.Normal(m, 1.5).log_prob(Y)) for m in MEANS])
    return np.asarray(jax.nn.softmax(lp))


@pytest.mark.parametrize("est", [Enumerate(), Reinforce(LeaveOneOut())], ids=lambda e: e.name)
def test_fit_of_a_one_hot_latent_converges_to_the_exact_posterior(est):
    res = provi.fit(
        _model, Y, guide=_guide, estimators={"c": est}, objective=provi.ELBO(num_particles=4),
        optimizer=optax.adam(0.03), steps=2000, seed=1, progress=False, average=True,
    )
    p = np.asarray(jax.nn.softmax(res.params["guide"]["l"]))
    np.testing.assert_allclose(p, _exact_posterior(), atol=0.03)
    draws = res.sample(2000, seed=0)["c"]
    assert draws.shape == (2000, 3) and bool(jnp.all(OneHotCategorical(probs=PRIOR).support(draws)))


def test_straight_through_fit_runs_and_is_flagged_biased():
    res = provi.fit(
        _model, Y, guide=_guide, estimators={"c": GumbelSoftmax(0.5)}, objective=provi.ELBO(num_particles=4),
        optimizer=optax.adam(0.03), steps=1000, seed=1, progress=False,
    )
    p = np.asarray(jax.nn.softmax(res.params["guide"]["l"]))
    exact = _exact_posterior()
    assert np.argmax(p) == np.argmax(exact)  # biased, but it moves the mass the right way
    assert res.diagnostics().estimators["c"] == "GumbelSoftmax(straight-through) (biased)"
