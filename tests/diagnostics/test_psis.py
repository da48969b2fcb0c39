"""PSIS-corrected answers: weighted moments against exact oracles, resampling, verdicts in words."""

import warnings

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

import provi
from provi.diagnostics import khat_verdict, psis, weighted_moments


def test_weighted_moments_exact_oracle():
    """Draws from q = N(0, 1.5^2) weighted to p = N(0.5, 1): moments and quantiles of p."""
    rng = np.random.default_rng(0)
    n = 40_000
    x = 1.5 * rng.normal(size=n)
    log_w = stats.norm.logpdf(x, 0.5, 1.0) - stats.norm.logpdf(x, 0.0, 1.5)
    lw, k = psis(log_w)
    assert k < 0.5
    m = weighted_moments(x, lw)
    w = np.exp(lw - np.logaddexp.reduce(lw))
    ess = 1.0 / np.sum(w**2)
    se = 1.0 / np.sqrt(ess)
    assert abs(m["mean"] - 0.5) < 4 * se
    assert abs(m["sd"] - 1.0) < 4 * se
    for p, key in ((0.05, "5%"), (0.5, "50%"), (0.95, "95%")):
        q = stats.norm.ppf(p, 0.5, 1.0)
        se_q = np.sqrt(p * (1 - p) / ess) / stats.norm.pdf(q, 0.5, 1.0)
        assert abs(m[key] - q) < 4 * se_q, (key, m[key], q)


def test_equal_weights_give_plain_moments():
    x = np.random.default_rng(1).normal(size=1001)
    m = weighted_moments(x, np.zeros_like(x))
    assert m["mean"] == pytest.approx(x.mean(), abs=1e-12)
    assert m["sd"] == pytest.approx(x.std(), abs=1e-12)
    assert m["50%"] == pytest.approx(np.median(x), abs=1e-12)


def _quartic():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    numpyro.factor("tilt", x - 0.25 * x**4)


def _quartic_exact():
    """Mean, sd and a quantile function of p(x) ~ exp(-x^2/2 - x^4/4 + x), by quadrature."""
    from scipy import integrate, optimize

    f = lambda x: np.exp(-0.5 * x**2 - 0.25 * x**4 + x)
    z = integrate.quad(f, -np.inf, np.inf)[0]
    mean = integrate.quad(lambda x: x * f(x), -np.inf, np.inf)[0] / z
    var = integrate.quad(lambda x: (x - mean) ** 2 * f(x), -np.inf, np.inf)[0] / z
    cdf = lambda t: integrate.quad(f, -np.inf, t)[0] / z
    ppf = lambda p: optimize.brentq(lambda t: cdf(t) - p, -10, 10)
    return mean, np.sqrt(var), ppf, lambda t: f(t) / z


def test_psis_summary_matches_exact_posterior():
    """A skewed posterior with lighter than normal tails, and a wider normal guide: the PSIS-weighted
    moments and quantiles match the exact ones (quadrature) within 4 standard errors."""
    import optax
    from numpyro.distributions import constraints

    def wide(*_):  # a guide held at N(0, 2^2), wider than the posterior: bounded weights
        m = numpyro.param("m", 0.0)
        s = numpyro.param("s", 2.0, constraint=constraints.positive)
        numpyro.sample("x", dist.Normal(m, s))

    mean, sd, ppf, pdf = _quartic_exact()
    res = provi.fit(_quartic, guide=wide, optimizer=optax.sgd(0.0), steps=1, progress=False, seed=0)
    plain = res.summary(8000, seed=3, correct=None).loc["x"]
    assert abs(plain["sd"] - sd) > 0.5  # the guide alone is far off
    n = 8000
    z, log_q = res.draws(n, 3)
    lw, k = psis(np.asarray(res.log_weights(z, log_q)))
    assert k < 0.5
    w = np.exp(lw - np.logaddexp.reduce(lw))
    ess = 1.0 / np.sum(w**2)
    fixed = res.summary(n, seed=3, correct="psis").loc["x"]
    se = sd / np.sqrt(ess)
    assert abs(fixed["mean"] - mean) < 4 * se
    assert abs(fixed["sd"] - sd) < 4 * se
    for p, key in ((0.05, "5%"), (0.5, "50%"), (0.95, "95%")):
        q = ppf(p)
        assert abs(fixed[key] - q) < 4 * np.sqrt(p * (1 - p) / ess) / pdf(q), key
    draws = res.sample(4000, correct="psis")["x"]
    assert abs(draws.mean() - mean) < 5 * sd / np.sqrt(min(ess, 4000))


def test_psis_refuses_when_khat_is_large():
    def funnel():
        v = numpyro.sample("v", dist.Normal(0.0, 3.0))
        numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([9]).to_event(1))

    res = provi.fit(funnel, guide="meanfield", steps=2000, progress=False, init="zero")
    d = res.diagnostics()
    assert d.khat >= 0.7 and not d.trustworthy
    assert "do not trust" in str(d)
    with pytest.raises(ValueError, match="unreliable"):
        res.summary(correct="psis")
    with pytest.raises(ValueError, match="unknown correction"):
        res.summary(correct="is")


def test_verdicts_in_words():
    assert "trusted" in khat_verdict(0.2)
    assert "correct='psis'" in khat_verdict(0.6)
    v = khat_verdict(0.9)
    assert "do not trust" in v and "float64" in v and "more steps" in v and "flow" in v


def test_khat_standard_error_matches_its_spread_over_draw_sets():
    """khat_se (the asymptotic standard error of the Pareto shape fit to PSIS's tail) against the
    spread of k-hat over 40 independent sets of 20,000 log weights whose tail has shape 0.6
    (log weights of a Pareto(1 / 0.6) variable): within 30% (the spread of 40 values is itself
    known to about 11%)."""
    from provi.diagnostics import khat_se, khat_usable

    rng = np.random.default_rng(0)
    ks = [psis(np.log(rng.pareto(1 / 0.6, 20_000) + 1.0))[1] for _ in range(40)]
    spread = np.std(ks, ddof=1)
    assert abs(np.mean(ks) - 0.6) < 3 * spread / np.sqrt(40) + 0.02, np.mean(ks)
    assert abs(khat_se(0.6, 20_000) / spread - 1) < 0.3, (khat_se(0.6, 20_000), spread)
    assert khat_usable(0.5, 0.08) and not khat_usable(0.65, 0.08) and not khat_usable(0.7, 0.0) and not khat_usable(np.nan)


@pytest.mark.parametrize("size", [5, 100, 4_000, 20_000])
@pytest.mark.parametrize("tail", ["pareto 0.6", "pareto 1.5", "normal", "bounded"])
def test_psis_equals_arviz_psislw(size, tail):
    """provi's PSIS (NumPy, so that a fit never waits for ArviZ's import) gives ArviZ's `psislw`
    smoothed log weights and k-hat to 1e-10, zero weights (-inf) included."""
    import arviz as az

    rng = np.random.default_rng(size)
    lw = {"pareto 0.6": lambda: np.log(rng.pareto(1 / 0.6, size) + 1.0), "pareto 1.5": lambda: np.log(rng.pareto(1 / 1.5, size) + 1.0),
          "normal": lambda: 3.0 * rng.normal(size=size), "bounded": lambda: -rng.exponential(size=size)}[tail]()
    lw[: size // 50] = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, k_expected = az.psislw(lw.copy(), reff=1.0)
    got, k = psis(lw)
    expected = np.asarray(expected)
    assert np.array_equal(np.isfinite(got), np.isfinite(expected))
    np.testing.assert_allclose(got[np.isfinite(got)], expected[np.isfinite(expected)], rtol=0, atol=1e-10)
    assert k == pytest.approx(float(k_expected), abs=1e-10) if np.isfinite(k) else not np.isfinite(float(k_expected))


def test_psis_of_a_flat_tail_is_finite_and_silent():
    """Tail weights equal to float precision (ArviZ's psislw gives NaN weights there): finite,
    normalised weights, no warning."""
    lw = np.r_[np.zeros(990), np.full(10, 1e-300)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, k = psis(lw)
    assert np.all(np.isfinite(got)) and np.isfinite(k) and k < 0.5
    assert np.logaddexp.reduce(got) == pytest.approx(0.0, abs=1e-12)
