"""Registry-driven contract of the estimators (jit, vmap, grad), bad input, defaults, and full
`provi.fit` runs of discrete-latent guides against the exact posterior."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from estimator_cases import DISTS, one_site_loss

import provi
from provi.errors import EstimatorError, ModelError
from provi.estimators import (
    MVD, REGISTRY, Enumerate, GumbelSoftmax, ImplicitReparam, LeaveOneOut, Learned, RejectionReparam, Reinforce,
    Reparam, RunningAverage, applicable, default_estimator,
)

# one representative distribution per registered estimator class
CONTRACT = {
    Reparam: (Reparam(), "Normal"),
    ImplicitReparam: (ImplicitReparam(), "VonMises"),
    RejectionReparam: (RejectionReparam(), "Dirichlet"),
    Reinforce: (Reinforce(LeaveOneOut()), "Poisson"),
    Enumerate: (Enumerate(), "BernoulliBatch"),
    MVD: (MVD(), "Normal"),
    GumbelSoftmax: (GumbelSoftmax(), "Bernoulli"),
}


def test_every_registered_estimator_has_a_contract_case():
    assert set(REGISTRY) == set(CONTRACT)


@pytest.mark.parametrize("cls", REGISTRY, ids=lambda c: c.__name__)
def test_contract_jit_vmap_grad(cls):
    est, dname = CONTRACT[cls]
    make, theta0, f, _ = DISTS[dname]
    f = (lambda z: z**2) if cls is GumbelSoftmax else f
    loss, params, data = one_site_loss(make, theta0, est, f, particles=3)
    vg = jax.value_and_grad(lambda p, k: loss(p, {}, k, data)[0])
    keys = jax.random.split(jax.random.PRNGKey(3), 5)
    v1, g1 = jax.jit(vg)(params, keys[2])
    vs, gs = jax.jit(jax.vmap(vg, in_axes=(None, 0)))(params, keys)
    np.testing.assert_allclose(vs[2], v1, rtol=1e-4, atol=1e-5)  # jit and vmap agree draw by draw
    for a, b in zip(jax.tree.leaves(gs), jax.tree.leaves(g1)):
        np.testing.assert_allclose(a[2], b, rtol=1e-3, atol=1e-4)
    assert vs.shape == (5,) and np.all(np.isfinite(vs))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(gs))
    assert np.any(np.abs(np.asarray(gs["guide"]["theta"])) > 0)  # the gradient reaches the parameters


@pytest.mark.parametrize(
    "est,fn,word",
    [
        (Reparam(), dist.Poisson(3.0), "Poisson"),
        (Enumerate(), dist.Poisson(3.0), "Poisson"),
        (Enumerate(), dist.Normal(0.0, 1.0), "Normal"),
        (MVD(), dist.Gamma(2.0, 1.0), "Gamma"),
        (GumbelSoftmax(), dist.Categorical(probs=jnp.ones(3) / 3), "Categorical"),
        (RejectionReparam(), dist.Normal(0.0, 1.0), "Normal"),
    ],
)
def test_inapplicable_estimator_names_site_distribution_and_alternatives(est, fn, word):
    def model():
        numpyro.sample("k", fn)

    def guide():
        numpyro.param("a", 0.0)
        numpyro.sample("k", fn, infer={"estimator": est})

    with pytest.raises(EstimatorError) as e:
        provi.fit(model, guide=guide, steps=1, progress=False)
    msg = str(e.value)
    assert "'k'" in msg and word in msg and est.name in msg
    assert ", ".join(applicable(fn)) in msg and "Reinforce" in msg


def test_strings_and_classes_are_refused():
    def model():
        numpyro.sample("k", dist.Bernoulli(0.5))

    def guide():
        numpyro.sample("k", dist.Bernoulli(numpyro.param("p", 0.5, constraint=dist.constraints.unit_interval)))

    for bad in ("Reinforce", Reinforce):
        with pytest.raises(EstimatorError, match="'k'"):
            provi.fit(model, guide=guide, steps=1, progress=False, estimators={"k": bad})
    with pytest.raises(TypeError, match="baseline"):
        Reinforce(baseline="loo")


def test_fit_time_choice_overrides_infer_and_unknown_sites_are_refused():
    def guide(y):
        p = numpyro.param("p", 0.5, constraint=dist.constraints.unit_interval)
        numpyro.sample("z", dist.Bernoulli(p), infer={"estimator": MVD()})

    res = provi.fit(_model, Y, guide=guide, estimators={"z": Reinforce()}, steps=2, progress=False)
    assert res.guide.estimators["z"] == Reinforce()
    res = provi.fit(_model, Y, guide=guide, steps=2, progress=False)
    assert res.guide.estimators["z"] == MVD()
    with pytest.raises(ModelError, match="'w'"):
        provi.fit(_model, Y, guide=guide, estimators={"w": MVD()}, steps=2, progress=False)


def test_defaults_and_applicable():
    assert default_estimator(dist.Normal(0.0, 1.0)) == Reparam()
    assert default_estimator(dist.Bernoulli(0.3)) == Enumerate()
    assert default_estimator(dist.Bernoulli(0.3), jnp.zeros((1000,))) == Reinforce(LeaveOneOut())  # too many branches
    assert default_estimator(dist.Categorical(probs=jnp.ones(100) / 100)) == Reinforce(LeaveOneOut())
    assert default_estimator(dist.Poisson(2.0)) == Reinforce(LeaveOneOut())
    assert applicable(dist.Poisson(2.0)) == ["Reinforce", "MVD"]
    assert "ImplicitReparam" in applicable(dist.VonMises(0.0, 1.0)) and "Reparam" not in applicable(dist.VonMises(0.0, 1.0))
    assert applicable(dist.Bernoulli(0.3)) == ["Reinforce", "Enumerate", "MVD", "GumbelSoftmax"]


# --- full fits: a Bernoulli latent whose exact posterior is known by enumeration --------------

Y = jnp.array([0.8, 1.3, -0.2, 0.9])


def _model(y):
    z = numpyro.sample("z", dist.Bernoulli(0.3))
    numpyro.sample("y", dist.Normal(2.0 * z - 1.0, 1.5), obs=y)


def _guide(y):
    p = numpyro.param("p", 0.5, constraint=dist.constraints.unit_interval)
    numpyro.sample("z", dist.Bernoulli(p))


def _exact_posterior():
    lp = jnp.array([jnp.log(0.7), jnp.log(0.3)]) + jnp.array(
        [jnp.sum(dist.Normal(2.0 * z - 1.0, 1.5).log_prob(Y)) for z in (0.0, 1.0)]
    )
    return float(jnp.exp(lp[1] - jax.nn.logsumexp(lp)))


@pytest.mark.parametrize(
    "est,tol,steps",
    [
        (Enumerate(), 0.03, 3000),  # unbiased, not noiseless: log q still varies with the draws
        (MVD(), 0.03, 3000),
        (Reinforce(LeaveOneOut()), 0.03, 1500),
        pytest.param(Reinforce(Learned(init=-8.0)), 0.03, 3000, marks=pytest.mark.slow),
        pytest.param(Reinforce(RunningAverage(0.9)), 0.03, 3000, marks=pytest.mark.slow),
    ],
    ids=lambda e: getattr(e, "name", ""),
)
def test_fit_converges_to_exact_posterior(est, tol, steps):
    res = provi.fit(
        _model, Y, guide=_guide, estimators={"z": est}, objective=provi.ELBO(num_particles=4),
        optimizer=optax.adam(0.03), steps=steps, seed=1, progress=False, average=True,
    )
    p = float(jax.nn.sigmoid(res.params["guide"]["p"]))
    assert abs(p - _exact_posterior()) < tol, (p, _exact_posterior())
    d = res.diagnostics()
    assert d.estimators["z"] == est.name
    if isinstance(getattr(est, "baseline", None), RunningAverage):
        assert float(res.params["estimators"]["z"]["weight"]) > 0.99  # the loop advanced its state


def test_biased_estimator_is_flagged_in_diagnostics():
    res = provi.fit(_model, Y, guide=_guide, estimators={"z": GumbelSoftmax()}, steps=50, seed=0, progress=False)
    d = res.diagnostics()
    assert d.estimators["z"] == "GumbelSoftmax(straight-through) (biased)"
    assert any("biased" in m for m in d.messages)
