"""Hard posteriors, each with its data: an additive Holt-Winters model (level, trend and
seasonality smoothing in (0, 1); NumPyro `scan`), the hyperparameters of a GP regression (its
marginal likelihood, skewed with heavy right tails), a Poisson regression on a latent GP (the
latent values centred: a funnel), a sparse regression with a horseshoe prior (funnels in every
coefficient), a small Bayesian neural network (46 weights: many modes, related by symmetry
and not) and a two-state hidden Markov model of a three-level series (NumPyro `scan` with the
states enumerated: a main mode, its label-switched copy and a minor mode 22 nats below), and a
Lotka-Volterra model solved by diffrax (an optional dependency; its solver differentiates in
reverse mode only). `tests/test_auto_hard.py` and `tests/integration/test_model_coverage.py` hold
guide="auto" to NUTS reference moments of all but the network (`tests/data/*_reference.json`,
made by `python tests/data/make_references.py`);
`benchmarks/posteriordb.py` runs them side by side with other methods."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan
from numpyro.infer.reparam import LocScaleReparam

N_SEASONS = 4
LENGTH = 40
HW_PARAMS = ["level_smoothing", "trend_smoothing", "seasonality_smoothing", "noise", "level_init", "trend_init"]


def series(seed: int = 0) -> np.ndarray:
    """A standardised quarterly series: a slow trend, a seasonal swing and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(LENGTH)
    y = 0.04 * t + 1.2 * np.sin(2 * np.pi * t / N_SEASONS + 0.4) + 0.5 * np.cumsum(rng.normal(0, 0.15, LENGTH)) + rng.normal(0, 0.3, LENGTH)
    return ((y - y.mean()) / y.std()).astype(np.float32)


def holt_winters(y, n_seasons=N_SEASONS):
    level_smoothing = numpyro.sample("level_smoothing", dist.Beta(1.0, 1.0))
    trend_smoothing = numpyro.sample("trend_smoothing", dist.Beta(1.0, 1.0))
    seasonality_smoothing = numpyro.sample("seasonality_smoothing", dist.Beta(1.0, 1.0))
    adjusted = seasonality_smoothing * (1.0 - level_smoothing)
    noise = numpyro.sample("noise", dist.HalfNormal(1.0))
    level_init = numpyro.sample("level_init", dist.Normal(0.0, 1.0))
    trend_init = numpyro.sample("trend_init", dist.Normal(0.0, 0.2))
    with numpyro.plate("seasons", n_seasons):
        season_init = numpyro.sample("season_init", dist.Normal(0.0, 1.0))

    def step(carry, y_t):
        level, trend, season = carry  # season[0]: this period's seasonal effect
        mu = level + trend + season[0]
        numpyro.sample("y", dist.Normal(mu, noise), obs=y_t)
        new_level = level_smoothing * (y_t - season[0]) + (1.0 - level_smoothing) * (level + trend)
        new_trend = trend_smoothing * (new_level - level) + (1.0 - trend_smoothing) * trend
        new_season = adjusted * (y_t - level - trend) + (1.0 - adjusted) * season[0]
        return (new_level, new_trend, jnp.concatenate([season[1:], new_season[None]])), mu

    scan(step, (level_init, trend_init, season_init), jnp.asarray(y))


GP_PARAMS = ["amplitude", "lengthscale", "noise"]


def gp_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 10.0, 30)
    return x.astype(np.float32), (np.sin(x) + 0.3 * rng.standard_normal(30)).astype(np.float32)


def gp_hyper(x, y=None):
    """GP regression with a squared-exponential kernel, f integrated out: the posterior of its
    amplitude, length scale and noise scale."""
    amp = numpyro.sample("amplitude", dist.LogNormal(0.0, 1.0))
    scale = numpyro.sample("lengthscale", dist.LogNormal(0.0, 1.0))
    noise = numpyro.sample("noise", dist.LogNormal(-1.0, 1.0))
    d = x[:, None] - x[None, :]
    k = amp**2 * jnp.exp(-0.5 * (d / scale) ** 2) + (noise**2 + 1e-5) * jnp.eye(x.shape[0])
    numpyro.sample("y", dist.MultivariateNormal(jnp.zeros(x.shape[0]), covariance_matrix=k), obs=y)


def gp_poisson_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ten counts at x = 0, 1, ..., 9, Poisson with log rate 1 + sin(x)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 9.0, 10)
    return x.astype(np.float32), rng.poisson(np.exp(1.0 + np.sin(x))).astype(np.int32)


def _gp_poisson_prior(x):
    """The hyperparameters' sites and what they give: the GP's mean and covariance at `x`."""
    amp = numpyro.sample("amplitude", dist.LogNormal(0.0, 1.0))
    scale = numpyro.sample("lengthscale", dist.LogNormal(1.0, 0.5))
    mean = numpyro.sample("mean", dist.Normal(0.0, 2.0))
    d = x[:, None] - x[None, :]
    return mean, amp**2 * jnp.exp(-0.5 * (d / scale) ** 2) + 1e-5 * jnp.eye(x.shape[0])


def gp_poisson(x, y=None):
    """Poisson regression on a latent GP: f ~ MVN(mean, K(amplitude, lengthscale)) at the inputs,
    y_i ~ Poisson(exp(f_i)); 13 latent dimensions, f centred (its covariance depends on the
    hyperparameters: a funnel between the amplitude and f)."""
    mean, k = _gp_poisson_prior(x)
    f = numpyro.sample("f", dist.MultivariateNormal(mean * jnp.ones(x.shape[0]), covariance_matrix=k))
    numpyro.sample("y", dist.Poisson(jnp.exp(f)), obs=y)


def gp_poisson_noncentered(x, y=None):
    """`gp_poisson` with f = mean + chol(K) z, z ~ N(0, I): the same posterior, easier for NUTS in
    float32 (the reference of benchmarks/posteriordb.py)."""
    mean, k = _gp_poisson_prior(x)
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([x.shape[0]]).to_event(1))
    f = numpyro.deterministic("f", mean + jnp.linalg.cholesky(k) @ z)
    numpyro.sample("y", dist.Poisson(jnp.exp(f)), obs=y)


def horseshoe_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """N = 100 observations of D = 20 standard normal features; three non-zero coefficients
    (3, -2, 1.5), unit noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((100, 20))
    beta = np.zeros(20)
    beta[:3] = (3.0, -2.0, 1.5)
    y = x @ beta + rng.standard_normal(100)
    return x.astype(np.float32), y.astype(np.float32)


def horseshoe(X, y=None):
    """Regression with a horseshoe prior: beta_j ~ Normal(0, tau lambda_j), half-Cauchy tau, lambda."""
    tau = numpyro.sample("tau", dist.HalfCauchy(1.0))
    with numpyro.plate("D", X.shape[1]):
        lam = numpyro.sample("lambda", dist.HalfCauchy(1.0))
        beta = numpyro.sample("beta", dist.Normal(0.0, tau * lam))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    with numpyro.plate("N", X.shape[0]):
        numpyro.sample("y", dist.Normal(X @ beta, sigma), obs=y)


def horseshoe_noncentered(X, y=None):
    """`horseshoe` with beta non-centred (the same posterior; NUTS diverges on the centred form)."""
    with numpyro.handlers.reparam(config={"beta": LocScaleReparam(centered=0)}):
        horseshoe(X, y)


BNN_HIDDEN = 15
BNN_GRID = np.linspace(-4.0, 4.0, 12).astype(np.float32)


def bnn_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """40 noisy points of sin(x) on (-3, -1) and (1, 3): a gap in the middle, nothing outside."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-3.0, -1.0, 20), rng.uniform(1.0, 3.0, 20)])
    return x[:, None].astype(np.float32), (np.sin(x) + 0.2 * rng.standard_normal(40)).astype(np.float32)


def bnn(x, y=None, grid=BNN_GRID):
    """A one-hidden-layer tanh network (15 units, 46 weights) with standard normal priors (the
    output layer's scaled by 1 / sqrt(15)) and a half-normal noise scale; `f_grid` is the network
    at 12 points of (-4, 4), the quantities its posterior is judged by (the weights themselves
    are identified only up to the symmetries of the hidden units)."""
    w1 = numpyro.sample("w1", dist.Normal(0.0, 1.0).expand([1, BNN_HIDDEN]).to_event(2))
    b1 = numpyro.sample("b1", dist.Normal(0.0, 1.0).expand([BNN_HIDDEN]).to_event(1))
    w2 = numpyro.sample("w2", dist.Normal(0.0, 1.0 / np.sqrt(BNN_HIDDEN)).expand([BNN_HIDDEN]).to_event(1))
    b2 = numpyro.sample("b2", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))

    def net(inputs):
        return jnp.tanh(inputs @ w1 + b1) @ w2 + b2

    numpyro.deterministic("f_grid", net(jnp.asarray(grid)[:, None]))
    with numpyro.plate("N", x.shape[0]):
        numpyro.sample("y", dist.Normal(net(x), sigma), obs=y)


HMM_LEVELS = (-3.0, 0.0, 3.0)


def hmm_data(seed: int = 1, length: int = 200) -> np.ndarray:
    """A series that stays at one of three levels (-3, 0, 3) with probability 0.9 per step and
    otherwise jumps to one of the other two, observed with noise of sd 0.4."""
    rng = np.random.default_rng(seed)
    states = [int(rng.integers(3))]
    for _ in range(length - 1):
        stay = rng.uniform() < 0.9
        states.append(states[-1] if stay else int(rng.choice([k for k in range(3) if k != states[-1]])))
    return (np.asarray(HMM_LEVELS)[states] + 0.4 * rng.standard_normal(length)).astype(np.float32)


def _hmm_parameters():
    """Two states' staying probabilities, levels and a shared noise scale; `levels` (the two
    levels sorted) is what the posterior is judged by, since the states' labels can switch."""
    stay = numpyro.sample("stay", dist.Beta(8.0, 2.0).expand([2]).to_event(1))
    locs = numpyro.sample("locs", dist.Normal(0.0, 3.0).expand([2]).to_event(1))
    scale = numpyro.sample("scale", dist.HalfNormal(2.0))
    numpyro.deterministic("levels", jnp.sort(locs))
    trans = jnp.stack([jnp.stack([stay[0], 1.0 - stay[0]]), jnp.stack([1.0 - stay[1], stay[1]])])
    return trans, locs, scale


def hmm(y):
    """A two-state Gaussian HMM written with `scan`, the states enumerated (summed out by the
    forward algorithm), the first state uniform. On `hmm_data()`'s three levels its posterior
    has a main mode (levels -3.0 and 1.1: the upper state takes 0 and 3), the same with the
    labels switched, and a minor mode 22 nats below (-1.6 and 2.8) whose basin holds about a
    third of random starts."""
    trans, locs, scale = _hmm_parameters()

    def step(z_prev, inputs):
        t, y_t = inputs
        z = numpyro.sample("z", dist.Categorical(jnp.where(t == 0, 0.5, trans[z_prev])), infer={"enumerate": "parallel"})
        numpyro.sample("y", dist.Normal(locs[z], scale), obs=y_t)
        return z, None

    y = jnp.asarray(y)
    scan(step, 0, (jnp.arange(y.shape[0]), y))


def hmm_marginal(y):
    """`hmm` with the states summed out by a hand-written forward algorithm (a `factor`): the same
    posterior for NUTS and for methods that cannot take enumerated sites."""
    trans, locs, scale = _hmm_parameters()
    emit = dist.Normal(locs, scale).log_prob(jnp.asarray(y)[:, None])
    alpha = jax.lax.scan(lambda a, e: (jax.nn.logsumexp(a[:, None] + jnp.log(trans), 0) + e, None), jnp.log(0.5) + emit[0], emit[1:])[0]
    numpyro.factor("y", jax.nn.logsumexp(alpha))


LV_TIMES = np.linspace(0.0, 4.0, 9).astype(np.float32)


def lotka_volterra_solve(rates):
    """Prey and predator densities (9, 2) at `LV_TIMES` from (1, 0.5), with prey growth rate a and
    predator efficiency b (`rates` = (a, b)): d prey = a prey - prey pred, d pred = b prey pred - pred,
    solved by diffrax's Tsit5 (step 0.05; differentiable in reverse mode only)."""
    import diffrax

    def vector_field(time, u, args):
        a, b = args
        prey, pred = u
        return jnp.stack([a * prey - prey * pred, b * prey * pred - pred])

    sol = diffrax.diffeqsolve(diffrax.ODETerm(vector_field), diffrax.Tsit5(), t0=0.0, t1=4.0, dt0=0.05,
                              y0=jnp.array([1.0, 0.5]), args=rates, saveat=diffrax.SaveAt(ts=jnp.asarray(LV_TIMES)))
    return sol.ys


def lotka_volterra_data(seed: int = 0) -> np.ndarray:
    """Densities (9, 2) from rates (1.0, 0.8) with 10% log-normal noise."""
    clean = np.log(np.asarray(lotka_volterra_solve((1.0, 0.8))))
    return np.exp(clean + 0.1 * np.random.default_rng(seed).normal(size=clean.shape)).astype(np.float32)


def lotka_volterra(y=None):
    a = numpyro.sample("a", dist.LogNormal(0.0, 0.5))
    b = numpyro.sample("b", dist.LogNormal(0.0, 0.5))
    numpyro.sample("y", dist.LogNormal(jnp.log(lotka_volterra_solve((a, b))), 0.1).to_event(2), obs=y)
