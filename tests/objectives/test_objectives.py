"""Built-in objectives against exact oracles on a normal-normal model (log p(x) exact).

Tolerances are in standard errors (4 SE) of Monte Carlo means over independent seeds.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import provi
from provi.errors import ObjectiveError
from objective_models import (
    X,
    Harness,
    exact_elbo,
    log_evidence,
    make_aux_guide,
    make_guide,
    mean_se,
    posterior,
)

LOGP = float(log_evidence())
M, SD = (float(v) for v in posterior())
Z = 4.0


def guide_for(obj, a=0.1, s=0.4):
    if obj.name in ("HVI", "IWHVI", "DIWHVI"):
        return make_aux_guide(a, 0.0, s)
    return make_guide(a, s)


def close(x, target, z=Z, slack=0.0):
    m, se = mean_se(x)
    assert abs(m - target) <= z * se + slack, f"mean {m} vs {target}: {abs(m - target) / se:.1f} SE"


def quad(f, lo=-8.0, hi=9.0, n=200_001):
    """int f(mu) dmu on a fine grid (the integrands here are smooth Gaussians)."""
    mu = jnp.linspace(lo, hi, n, dtype=jnp.float32)
    y = np.asarray(f(mu), dtype=np.float64)
    return float(np.trapezoid(y, np.asarray(mu, dtype=np.float64)))


def log_w_fn(a, s):
    """log p(x, mu) - log q(mu) for q = Normal(a, s), as a function of mu."""
    return lambda mu: LOGP + jax.scipy.stats.norm.logpdf(mu, M, SD) - jax.scipy.stats.norm.logpdf(mu, a, s)


def expect_w_power(beta, a, s):
    """E_q[w^beta] by quadrature."""
    lw = log_w_fn(a, s)
    return quad(lambda mu: jnp.exp(beta * (lw(mu) - LOGP) + jax.scipy.stats.norm.logpdf(mu, a, s))) * np.exp(beta * LOGP)


# --- every bound is exact, with zero variance, when the guide is the posterior -------------------


@pytest.mark.parametrize("obj", provi.objectives.REGISTRY, ids=repr)
def test_exact_posterior_gives_log_evidence_with_zero_variance(obj):
    values, _ = Harness(guide_for(obj, M, SD), obj).run(64)
    target = -LOGP if obj.name == "CUBO" else LOGP  # CUBO returns minus the upper bound
    if dict(obj.options).get("analytic_kl"):  # E_q[log p(x | z)] - KL varies with z: exact in mean only
        close(Harness(guide_for(obj, M, SD), obj).run(4000)[0], target)
        return
    np.testing.assert_allclose(values, target, atol=2e-4)
    assert np.std(values) < 1e-4


# --- values equal their definitions ------------------------------------------------------------


def test_elbo_is_unbiased_with_and_without_analytic_kl():
    mc, _ = Harness(make_guide(0.1, 0.4), provi.ELBO()).run(4000)
    an, _ = Harness(make_guide(0.1, 0.4), provi.ELBO(analytic_kl=True)).run(4000)
    target = float(exact_elbo(0.1, 0.4))
    close(mc, target)
    close(an, target)


def test_kl_primitive_names_the_sites_it_covers():
    h = Harness(make_guide(0.1, 0.4), provi.ELBO())
    from provi.core.bound import BoundGuide, BoundModel, KeyStream

    keys = KeyStream(jax.random.PRNGKey(0))
    model = BoundModel(h.model, h.params["model"], keys, (X,), {})
    guide = BoundGuide(h.guide, h.params["guide"], {}, keys, (X,), {})
    z, _ = provi.sim(guide, n=3)
    kl, sites = provi.kl(guide, model, z)
    assert sites == ("mu",) and kl.shape == (3,)
    q_to_prior = jnp.log(1.0 / 0.4) + (0.4**2 + (0.1 - 0.5) ** 2) / 2 - 0.5  # KL(N(.1,.4) || N(.5,1))
    np.testing.assert_allclose(kl, q_to_prior, rtol=1e-5)
    # per-site densities: the prior term of mu alone, and the likelihood alone
    prior = provi.density(model, z, sites=["mu"])
    lik = provi.density(model, z, sites=["x"])
    np.testing.assert_allclose(prior + lik, provi.density(model, z), rtol=1e-5)


@pytest.mark.parametrize("k", [1, 8])
def test_iwae_is_an_unbiased_evidence_estimate_in_exp(k):
    values, _ = Harness(make_guide(0.1, 0.4), provi.IWAE(k=k)).run(4000)
    close(np.exp(values - LOGP), 1.0)


@pytest.mark.slow
def test_iwae_tightens_towards_log_evidence_as_k_grows():
    means = [np.mean(Harness(make_guide(0.1, 0.4), provi.IWAE(k=k)).run(1000)[0]) for k in (1, 10, 100, 1000)]
    assert means[0] < means[1] < means[2] < means[3] <= LOGP + 1e-3
    assert LOGP - means[3] < 0.01


@pytest.mark.slow
def test_same_draws_give_the_iwae_value():
    """DReG, VIMCO, RWS and ChiSquareVIS report the IWAE bound; PIWAE(k, m) the IWAE bound of k*m draws."""
    base, _ = Harness(make_guide(0.1, 0.4), provi.IWAE(k=6)).run(50)
    for obj in (provi.DReG(k=6), provi.VIMCO(k=6), provi.RWS(k=6), provi.ChiSquareVIS(k=6), provi.PIWAE(k=3, m=2)):
        np.testing.assert_allclose(Harness(make_guide(0.1, 0.4), obj).run(50)[0], base, rtol=1e-5, err_msg=repr(obj))
    elbo, _ = Harness(make_guide(0.1, 0.4), provi.ELBO(num_particles=6)).run(50)
    np.testing.assert_allclose(Harness(make_guide(0.1, 0.4), provi.STL(num_particles=6)).run(50)[0], elbo, rtol=1e-5)
    np.testing.assert_allclose(Harness(make_guide(0.1, 0.4), provi.Renyi(alpha=0.0, k=6)).run(50)[0], base, rtol=1e-5)
    np.testing.assert_allclose(Harness(make_guide(0.1, 0.4), provi.Renyi(alpha=1.0, k=6)).run(50)[0], elbo, rtol=1e-5)
    ciwae, _ = Harness(make_guide(0.1, 0.4), provi.CIWAE(k=6, beta=0.3)).run(50)
    np.testing.assert_allclose(ciwae, 0.3 * elbo + 0.7 * base, rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.5, -1.0])
def test_renyi_matches_its_definition(alpha):
    values, _ = Harness(make_guide(0.1, 0.7), provi.Renyi(alpha=alpha, k=4)).run(4000)
    beta = 1 - alpha  # exp(beta * value) is the mean of w^beta: unbiased for E_q[w^beta]
    close(np.exp(beta * (values - LOGP)), expect_w_power(beta, 0.1, 0.7) / np.exp(beta * LOGP))


def test_cubo_matches_its_definition():
    values, _ = Harness(make_guide(0.1, 0.7), provi.CUBO(n=2, k=4)).run(4000)
    close(np.exp(-2 * values - 2 * LOGP), expect_w_power(2.0, 0.1, 0.7) / np.exp(2 * LOGP))
    assert np.mean(-values) > LOGP  # an upper bound (in the large-k limit; here also on average)


def test_miwae_is_the_mean_of_m_iwae_bounds():
    miwae, _ = Harness(make_guide(0.1, 0.4), provi.MIWAE(k=3, m=4)).run(4000)
    iwae, _ = Harness(make_guide(0.1, 0.4), provi.IWAE(k=3)).run(16000, seed=1)
    m1, se1 = mean_se(miwae)
    m2, se2 = mean_se(iwae)
    assert abs(m1 - m2) < Z * np.hypot(se1, se2)
    assert np.var(miwae) < np.var(iwae) / 2  # four independent bounds averaged


# --- hierarchical guides: u ~ N(0, 1), mu ~ N(a + b u, s), so q(mu) = N(a, sqrt(b^2 + s^2)) --------

A, B, S = 0.1, 0.5, 0.3
S_MARG = float(np.hypot(B, S))


def test_hvi_matches_its_definition():
    values, _ = Harness(make_aux_guide(A, B, S), provi.HVI(num_particles=2)).run(4000)
    e_log_joint = float(exact_elbo(A, S_MARG)) - 0.5 * np.log(2 * np.pi * np.e * S_MARG**2)
    close(values, e_log_joint + 0.5 * np.log(2 * np.pi * np.e * S**2))  # minus E[log q(mu | u)]


def test_iwhvi_tightens_to_the_marginal_elbo_as_m_grows():
    target = float(exact_elbo(A, S_MARG))
    means = []
    for m in (0, 4, 64):
        values, _ = Harness(make_aux_guide(A, B, S), provi.IWHVI(k=1, m=m)).run(4000)
        means.append(mean_se(values))
    assert means[0][0] < means[1][0] < means[2][0]
    assert means[2][0] <= target + Z * means[2][1]
    assert target - means[2][0] < 0.02


@pytest.mark.slow
def test_diwhvi_tightens_to_iwae_with_the_marginal_guide():
    iwae, _ = Harness(make_guide(A, S_MARG), provi.IWAE(k=4)).run(4000, seed=3)
    d_small, _ = Harness(make_aux_guide(A, B, S), provi.DIWHVI(k=4, m=1)).run(4000)
    d_big, _ = Harness(make_aux_guide(A, B, S), provi.DIWHVI(k=4, m=64)).run(4000)
    iw = mean_se(iwae)
    assert np.mean(d_small) < np.mean(d_big)
    assert np.mean(d_big) <= iw[0] + Z * iw[1]
    assert iw[0] - np.mean(d_big) < 0.02


# --- gradients ---------------------------------------------------------------------------------


def _snr(grads):
    return np.abs(np.mean(grads)) / np.std(grads)


def test_dreg_is_unbiased_for_the_iwae_gradient():
    for k in (2, 16):
        _, gi = Harness(make_guide(0.1, 0.4), provi.IWAE(k=k)).run(8000)
        _, gd = Harness(make_guide(0.1, 0.4), provi.DReG(k=k)).run(8000, seed=1)
        for part, name in (("guide", "loc"), ("guide", "scale"), ("model", "theta")):
            a, b = mean_se(gi[part][name]), mean_se(gd[part][name])
            assert abs(a[0] - b[0]) < Z * np.hypot(a[1], b[1]), (k, name, a, b)


def snr_table(ks=(1, 10, 100, 1000), reps=2000):
    """Signal-to-noise ratio |mean| / sd of the guide's `loc` gradient, IWAE vs DReG, per k."""
    out = {}
    for k in ks:
        _, gi = Harness(make_guide(0.1, 0.4), provi.IWAE(k=k)).run(reps)
        _, gd = Harness(make_guide(0.1, 0.4), provi.DReG(k=k)).run(reps)
        out[k] = (_snr(gi["guide"]["loc"]), _snr(gd["guide"]["loc"]), np.var(gi["guide"]["loc"]), np.var(gd["guide"]["loc"]))
    return out


@pytest.mark.slow
def test_dreg_signal_to_noise_does_not_decay_like_iwae():
    t = snr_table(ks=(10, 1000))
    (iwae_10, dreg_10, vi_10, vd_10), (iwae_1000, dreg_1000, vi_1000, vd_1000) = t[10], t[1000]
    assert iwae_1000 < 0.3 * iwae_10  # IWAE's guide SNR decays ~ 1/sqrt(k) (Rainforth et al. 2018): 0.1 here
    assert dreg_1000 > 0.5 * dreg_10  # DReG's does not
    assert dreg_1000 > 10 * iwae_1000
    assert vd_1000 / vi_1000 < 0.1 * vd_10 / vi_10  # DReG's variance falls faster with k than IWAE's


def test_stl_gradient_vanishes_at_the_posterior_and_is_unbiased_elsewhere():
    _, g = Harness(make_guide(M, SD), provi.STL()).run(200)
    _, ge = Harness(make_guide(M, SD), provi.ELBO()).run(200)
    assert np.max(np.abs(g["guide"]["loc"])) < 1e-5 and np.max(np.abs(g["guide"]["scale"])) < 1e-5
    assert np.std(ge["guide"]["loc"]) > 0.1
    _, gs = Harness(make_guide(0.1, 0.4), provi.STL()).run(8000)
    _, ge = Harness(make_guide(0.1, 0.4), provi.ELBO()).run(8000, seed=1)
    for name in ("loc", "scale"):
        a, b = mean_se(gs["guide"][name]), mean_se(ge["guide"][name])
        assert abs(a[0] - b[0]) < Z * np.hypot(a[1], b[1])


@pytest.mark.slow
def test_stl_for_families_vanishes_at_the_posterior():
    """A fullrank family started at the mode and curvature of a Gaussian posterior is exact: STL's
    guide gradient is zero there, the ELBO's is not."""
    import optax

    from objective_models import model
    from provi.engine.loss import make_loss

    for obj, tiny in ((provi.STL(num_particles=4), True), (provi.ELBO(num_particles=4), False)):
        res = provi.fit(model, X, guide="fullrank", objective=obj, optimizer=optax.sgd(0.0), steps=1, progress=False)
        loss = make_loss(res.model, res.guide, obj, res.layout)
        grad = jax.vmap(lambda k: jax.grad(lambda p: loss(p, res.consts, k, res.data)[0])(res.params)["guide"])
        biggest = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grad(jax.random.split(jax.random.PRNGKey(0), 50))))
        assert (biggest < 1e-3) if tiny else (biggest > 0.1), (obj, biggest)


def test_vimco_is_unbiased_and_beats_the_plain_score_function():
    est = provi.estimators.Reinforce()
    _, gv = Harness(make_guide(0.1, 0.4, est), provi.VIMCO(k=8)).run(8000)
    _, gr = Harness(make_guide(0.1, 0.4, est), provi.IWAE(k=8)).run(8000, seed=1)  # generic surrogate
    _, gp = Harness(make_guide(0.1, 0.4), provi.IWAE(k=8)).run(8000, seed=2)  # pathwise reference
    for name in ("loc", "scale"):
        a, b = mean_se(gv["guide"][name]), mean_se(gp["guide"][name])
        assert abs(a[0] - b[0]) < Z * np.hypot(a[1], b[1])
        assert np.var(gv["guide"][name]) < 0.5 * np.var(gr["guide"][name])


@pytest.mark.slow
def test_rws_wake_updates_follow_the_exact_posterior():
    a, s = 0.1, 0.4
    _, g = Harness(make_guide(a, s), provi.RWS(k=2000)).run(400)
    # wake-q: E_p[d/da log q(mu)] = (m - a) / s^2; wake-p: d/dtheta log p(x)
    close(g["guide"]["loc"], (M - a) / s**2, slack=0.02 * abs((M - a) / s**2))
    dlogp = float(jax.grad(lambda t: log_evidence(theta=t))(0.5))
    close(g["model"]["theta"], dlogp, slack=0.01 * abs(dlogp))


@pytest.mark.slow
def test_chi_square_vis_guide_gradient():
    a, s = 0.1, 0.7

    def half_log_e_w2(loc, log_scale):
        sc = jnp.exp(log_scale)
        f = lambda mu: jnp.exp(2 * jax.scipy.stats.norm.logpdf(mu, M, SD) - jax.scipy.stats.norm.logpdf(mu, loc, sc))
        mu = jnp.linspace(-8.0, 9.0, 100_001)
        return 0.5 * jnp.log(jnp.trapezoid(f(mu), mu))

    target = jax.grad(lambda l: -half_log_e_w2(l, jnp.log(s)))(a)
    _, g = Harness(make_guide(a, s), provi.ChiSquareVIS(k=2000)).run(400)
    close(g["guide"]["loc"], float(target), slack=0.03 * abs(float(target)))


@pytest.mark.slow
def test_piwae_trains_the_model_on_iwae_and_the_guide_on_miwae():
    _, gp = Harness(make_guide(0.1, 0.4), provi.PIWAE(k=3, m=2)).run(20)
    _, gi = Harness(make_guide(0.1, 0.4), provi.IWAE(k=6)).run(20)
    _, gm = Harness(make_guide(0.1, 0.4), provi.MIWAE(k=3, m=2)).run(20)
    np.testing.assert_allclose(gp["model"]["theta"], gi["model"]["theta"], rtol=1e-4, atol=1e-6)
    for name in ("loc", "scale"):
        np.testing.assert_allclose(gp["guide"][name], gm["guide"][name], rtol=1e-4, atol=1e-6)


# --- user-written objectives -------------------------------------------------------------------


@provi.objective
def my_iwae(model, guide, *args, k=5):
    z, log_q = provi.sim(guide, *args, n=k)
    log_w = provi.density(model, z, *args) - log_q
    return jax.nn.logsumexp(log_w) - jnp.log(k)


def test_a_five_line_iwae_matches_the_builtin():
    v1, g1 = Harness(make_guide(0.1, 0.4), my_iwae(k=7)).run(20)
    v2, g2 = Harness(make_guide(0.1, 0.4), provi.IWAE(k=7)).run(20)
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# --- bad input ---------------------------------------------------------------------------------


@provi.objective
def per_particle(model, guide, *args):
    z, log_q = provi.sim(guide, *args, n=3)
    return provi.density(model, z, *args) - log_q


@provi.objective
def broken(model, guide, *args):
    z, log_q = provi.sim(guide, *args, n=3)
    return jnp.mean(provi.density(model, z, *args) - log_q) + jnp.inf


def _value(obj):
    h = Harness(make_guide(0.1, 0.4), obj)
    return h.loss(h.params, {}, jax.random.PRNGKey(0), h.data)


def test_a_non_scalar_objective_is_named():
    with pytest.raises(ObjectiveError, match="per_particle.*scalar"):
        _value(per_particle)


def test_a_non_finite_objective_is_named():
    with pytest.raises(ObjectiveError, match="broken.*non-finite"):
        _value(broken)
    with pytest.warns(RuntimeWarning, match="broken"):
        provi.fit(lambda x: __import__("objective_models").model(x), X, guide=make_guide(0.1, 0.4), objective=broken, steps=5, progress=False)


# --- nesting: the marginal estimate composes with any outer objective --------------------------


@provi.objective
def my_diwhvi(model, guide, *args, k=4, m=3):
    z, log_q = provi.sim(guide, *args, n=k)
    latents, _ = provi.split_auxiliary(guide, z)
    log_p = provi.density(model, latents, *args)
    return provi.log_mean_exp(log_p - provi.objectives.marginal_log_q(guide, z, log_q, *args, m=m))


def test_a_user_hierarchical_iwae_matches_diwhvi():
    """(The same draws need the same order of calls: each call takes the next key.)"""
    v1, g1 = Harness(make_aux_guide(A, B, S), my_diwhvi(k=4, m=3)).run(10)
    v2, g2 = Harness(make_aux_guide(A, B, S), provi.DIWHVI(k=4, m=3)).run(10)
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def exact_reverse(z, x):
    """q(u | mu) of the hierarchical guide: Normal(b (mu - a) / (b^2 + s^2), s / sqrt(b^2 + s^2))."""
    import numpyro
    import numpyro.distributions as dist

    numpyro.sample("u", dist.Normal(B * (z["mu"] - A) / S_MARG**2, S / S_MARG))


def test_an_exact_reverse_model_makes_hvi_the_marginal_elbo():
    target = float(exact_elbo(A, S_MARG))
    for obj in (provi.HVI(num_particles=2, reverse=exact_reverse), provi.IWHVI(k=2, m=3, reverse=exact_reverse)):
        values, grads = Harness(make_aux_guide(A, B, S), obj).run(4000)
        close(values, target)
    # with the exact reverse model the marginal estimate is exact draw by draw: the same values as
    # the ELBO of the marginal guide up to the draws' randomness, so their variance matches it
    elbo, _ = Harness(make_guide(A, S_MARG), provi.ELBO(num_particles=2)).run(4000)
    assert abs(np.var(values) / np.var(elbo) - 1) < 0.15


# --- per-data-point VIMCO on a discrete local latent, against exhaustive enumeration ------------
XB = jnp.array([-1.3, 0.2, 0.9, 2.1, -0.4])
PRIOR_ONE = 0.3


def bernoulli_model(x):
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", dist.Bernoulli(PRIOR_ONE))
        numpyro.sample("x", dist.Normal(2.0 * z - 1.0, 1.0), obs=x)


def bernoulli_guide(x):
    a, b = numpyro.param("a", 0.25), numpyro.param("b", 0.5)  # no logit exactly 0: NumPyro's gradient is wrong there
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("z", dist.Bernoulli(logits=a + b * x), infer={"estimator": provi.estimators.Reinforce()})


def exact_per_point_iwae(a, b, k):
    """sum_n E[log (1/k) sum_i p(x_n, z_i) / q(z_i | x_n)], summing over all 2^k particle values."""
    combos = jnp.asarray(list(itertools.product([0.0, 1.0], repeat=k)))  # (2^k, k)
    q1 = jax.nn.sigmoid(a + b * XB)[:, None, None]  # (N, 1, 1)
    log_q = jnp.where(combos == 1, jnp.log(q1), jnp.log1p(-q1))  # (N, 2^k, k)
    log_prior = jnp.where(combos == 1, jnp.log(PRIOR_ONE), jnp.log1p(-PRIOR_ONE))
    log_lik = jax.scipy.stats.norm.logpdf(XB[:, None, None], 2.0 * combos - 1.0, 1.0)
    bound = jax.nn.logsumexp(log_prior + log_lik - log_q, axis=-1) - jnp.log(k)
    return jnp.sum(jnp.exp(log_q.sum(-1)) * bound)


def test_per_point_vimco_gradient_is_exact_in_expectation_and_beats_the_plain_score():
    k, reps = 3, 6000
    exact = jax.grad(exact_per_point_iwae, argnums=(0, 1))(0.25, 0.5, k)
    values, gv = Harness(bernoulli_guide, provi.VIMCO(k=k, plate="data"), mdl=bernoulli_model, args=(XB,)).run(reps)
    _, gr = Harness(bernoulli_guide, provi.IWAE(k=k, plate="data"), mdl=bernoulli_model, args=(XB,)).run(reps, seed=1)
    mean, se = mean_se(values)
    assert abs(mean - float(exact_per_point_iwae(0.25, 0.5, k))) < Z * se
    for name, target in zip(("a", "b"), exact):
        m, s = mean_se(gv["guide"][name])
        assert abs(m - float(target)) < Z * s, (name, m, float(target), s)
        assert np.var(gv["guide"][name]) < 0.5 * np.var(gr["guide"][name])


# --- ELBO(plate=): per-element learning signals for score-function sites in a data plate --------
def _global_local_model(x, batch=None):
    z0 = numpyro.sample("z0", dist.Bernoulli(0.5))
    with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
        z = numpyro.sample("z", dist.Bernoulli(logits=z0 - 0.5))
        numpyro.sample("x", dist.Normal(2.0 * z - 1.0 + z0, 1.0), obs=x[idx])


def _global_local_guide(est):
    def guide(x, batch=None):
        c = numpyro.param("c", 0.3)
        a, b, d = numpyro.param("a", 0.25), numpyro.param("b", 0.5), numpyro.param("d", -0.4)
        z0 = numpyro.sample("z0", dist.Bernoulli(logits=c), infer={"estimator": est})
        with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
            numpyro.sample("z", dist.Bernoulli(logits=a + b * x[idx] + d * z0), infer={"estimator": est})

    return guide


def exact_global_local_elbo(p):
    """The ELBO of _global_local_model / _global_local_guide, summed exactly over z0 and each z_n."""
    total = 0.0
    q0 = jax.nn.sigmoid(p["c"])
    for z0, w0 in ((1.0, q0), (0.0, 1 - q0)):
        q1 = jax.nn.sigmoid(p["a"] + p["b"] * XB + p["d"] * z0)
        prior1 = jax.nn.sigmoid(z0 - 0.5)
        local = 0.0
        for z, wz in ((1.0, q1), (0.0, 1 - q1)):
            lp = jnp.log(jnp.where(z == 1, prior1, 1 - prior1)) + jax.scipy.stats.norm.logpdf(XB, 2 * z - 1 + z0, 1.0)
            local = local + wz * (lp - jnp.log(wz))
        total = total + w0 * (jnp.log(0.5) - jnp.log(w0) + jnp.sum(local))
    return total


@pytest.mark.parametrize("baseline", ["none", "loo"], ids=["no-baseline", "leave-one-out"])
def test_per_element_signals_are_unbiased_with_less_variance(baseline):
    """A global and a local discrete latent, both by REINFORCE: ELBO(plate=) gives the exact
    gradient in expectation (the global site takes the whole term, each element of the local site
    its own terms plus the global ones), full data and minibatch, with less variance."""
    est = provi.estimators.Reinforce(provi.estimators.LeaveOneOut() if baseline == "loo" else provi.estimators.NoBaseline())
    init = {"a": 0.25, "b": 0.5, "c": 0.3, "d": -0.4}
    exact = jax.grad(exact_global_local_elbo)(init)
    reps = 6000
    _, per_element = Harness(_global_local_guide(est), provi.ELBO(num_particles=4, plate="data"), mdl=_global_local_model, args=(XB,)).run(reps)
    _, per_particle = Harness(_global_local_guide(est), provi.ELBO(num_particles=4), mdl=_global_local_model, args=(XB,)).run(reps, seed=1)
    for name in init:
        m, s = mean_se(per_element["guide"][name])
        assert abs(m - float(exact[name])) < Z * s, (name, m, float(exact[name]), s)
    for name in ("a", "b"):  # the local site's parameters
        assert np.var(per_element["guide"][name]) < 0.6 * np.var(per_particle["guide"][name])


@pytest.mark.parametrize("plate", [None, "data"], ids=["per-particle", "per-element"])
def test_reinforce_under_a_minibatch_is_unbiased_for_the_full_data_gradient(plate):
    """Batch 2 of 5: the score is the draw's own log q, the minibatch scale N/B is in the objective's
    terms only (scaling both was N/B too large, a bias found by this test)."""
    est = provi.estimators.Reinforce(provi.estimators.LeaveOneOut())
    init = {"a": 0.25, "b": 0.5, "c": 0.3, "d": -0.4}
    exact = jax.grad(exact_global_local_elbo)(init)
    harness = Harness(_global_local_guide(est), provi.ELBO(num_particles=4, plate=plate), mdl=_global_local_model,
                      args=(XB,), kwargs={"batch": 2})
    _, g = harness.run(20000)
    for name in init:
        m, s = mean_se(g["guide"][name])
        assert abs(m - float(exact[name])) < Z * s, (name, m, float(exact[name]), s)
