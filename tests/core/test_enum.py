"""Discrete sites enumerated in the model: the marginal density, its gradient, the ELBO's
gradient and the discrete conditionals against brute-force enumeration of every assignment and
exact quadrature; HMMs (markov and scan, batched in a plate) against the forward algorithm."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.control_flow import scan
from numpyro.contrib.funsor import markov

import provi
from provi.core.bound import KeyStream
from provi.errors import ModelError

ENUM = {"enumerate": "parallel"}
X = jnp.array([-2.1, -1.8, 0.1, 2.2, 2.5, 1.9])


def mixture(x):
    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
    mu = numpyro.sample("mu", dist.Normal(jnp.zeros(3), 3.0).to_event(1))
    with numpyro.plate("n", x.shape[0]):
        z = numpyro.sample("z", dist.Categorical(w), infer=ENUM)
        numpyro.sample("x", dist.Normal(mu[z], 1.0), obs=x)


def mixture_brute(values, x=X):
    w, mu = values["w"], values["mu"]
    prior = dist.Dirichlet(jnp.ones(3)).log_prob(w) + dist.Normal(0.0, 3.0).log_prob(mu).sum()
    terms = [jnp.log(w[jnp.array(zs)]).sum() + dist.Normal(mu[jnp.array(zs)], 1.0).log_prob(x).sum()
             for zs in itertools.product(range(3), repeat=x.shape[0])]
    return prior + jax.nn.logsumexp(jnp.stack(terms))


def _density(model, *args):
    alg = provi.setup(model, *args, guide="meanfield", init="prior")
    return alg, lambda v: alg.model.log_density({}, v, args, {}, KeyStream(jax.random.PRNGKey(0)))


def test_mixture_density_and_gradient_match_brute_force():
    alg, f = _density(mixture, X)
    assert [s.name for s in alg.model.info.enumerated] == ["z"] and alg.model.info.latent_names == ("w", "mu")
    v = {"w": jnp.array([0.2, 0.3, 0.5]), "mu": jnp.array([-2.0, 0.3, 2.0])}
    np.testing.assert_allclose(f(v), mixture_brute(v), rtol=1e-5)
    g, gb = jax.grad(f)(v), jax.grad(mixture_brute)(v)
    for k in v:
        np.testing.assert_allclose(g[k], gb[k], rtol=1e-4, atol=1e-5)


def test_mixture_conditionals_and_map_are_exact():
    alg, _ = _density(mixture, X)
    res = provi.FitResult.from_state(alg, alg.init(jax.random.PRNGKey(0)))
    w, mu, n = jnp.array([0.2, 0.3, 0.5]), jnp.array([-2.0, 0.3, 2.0]), 4000
    draws = res.discrete({"w": jnp.broadcast_to(w, (n, 3)), "mu": jnp.broadcast_to(mu, (n, 3))}, seed=3)["z"]
    logits = jnp.log(w) + dist.Normal(mu, 1.0).log_prob(X[:, None])  # (N, K): the exact conditional of each z_i
    exact = np.asarray(jax.nn.softmax(logits, axis=-1))
    for i in range(X.shape[0]):
        for k in range(3):
            freq = np.mean(draws[:, i] == k)
            assert abs(freq - exact[i, k]) < 4 * np.sqrt(exact[i, k] * (1 - exact[i, k]) / n) + 1e-3
    best = res.discrete({"w": w[None], "mu": mu[None]}, temperature=0)["z"][0]
    np.testing.assert_array_equal(best, np.argmax(exact, axis=-1))


CONC = jnp.array([[3.0, 1.0], [1.0, 3.0]])


def annotation(labels):
    """Dawid-Skene: each item's true class is enumerated; annotators' confusion matrices are latent."""
    pi = numpyro.sample("pi", dist.Dirichlet(jnp.ones(2)))
    with numpyro.plate("annotator", labels.shape[1], dim=-2):
        with numpyro.plate("class", 2, dim=-1):
            beta = numpyro.sample("beta", dist.Dirichlet(CONC))
    with numpyro.plate("item", labels.shape[0], dim=-2):
        c = numpyro.sample("c", dist.Categorical(pi), infer=ENUM)
        with numpyro.plate("position", labels.shape[1], dim=-1):
            numpyro.sample("y", dist.Categorical(beta[jnp.arange(labels.shape[1]), c]), obs=labels)


def test_annotation_model_density_matches_brute_force():
    labels = jnp.array([[0, 0, 1], [1, 1, 1], [0, 1, 0], [1, 1, 0]])
    alg, f = _density(annotation, labels)
    v = {"pi": jnp.array([0.4, 0.6]), "beta": jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(2), (3, 2, 2)), -1)}

    def brute(v):
        total = dist.Dirichlet(jnp.ones(2)).log_prob(v["pi"]) + dist.Dirichlet(CONC).log_prob(v["beta"]).sum()
        for i in range(labels.shape[0]):
            per_class = [jnp.log(v["pi"][c]) + sum(jnp.log(v["beta"][j, c, labels[i, j]]) for j in range(3)) for c in range(2)]
            total = total + jax.nn.logsumexp(jnp.stack(per_class))
        return total

    np.testing.assert_allclose(f(v), brute(v), rtol=1e-5)
    g, gb = jax.grad(f)(v), jax.grad(brute)(v)
    np.testing.assert_allclose(g["beta"], gb["beta"], rtol=1e-4, atol=1e-5)


OBS = jnp.array([0.1, 0.9, 1.2, -0.2, 0.3, 1.4, 0.8, -0.1])
MEANS = jnp.array([0.0, 1.0])


def hmm_markov(obs):
    """A two-state HMM written with `markov`, one shared `infer` dict for every site."""
    stay = numpyro.sample("stay", dist.Beta(4.0, 1.0))
    trans = jnp.array([[stay, 1 - stay], [1 - stay, stay]])
    z = 0
    for t in markov(range(obs.shape[0])):
        z = numpyro.sample(f"z_{t}", dist.Categorical(trans[z]), infer=ENUM)
        numpyro.sample(f"x_{t}", dist.Normal(MEANS[z], 0.5), obs=obs[t])


def hmm_scan(obs):
    """The same HMM written with `scan`."""
    stay = numpyro.sample("stay", dist.Beta(4.0, 1.0))
    trans = jnp.array([[stay, 1 - stay], [1 - stay, stay]])

    def step(z_prev, x):
        z = numpyro.sample("z", dist.Categorical(trans[z_prev]), infer=ENUM)
        numpyro.sample("x", dist.Normal(MEANS[z], 0.5), obs=x)
        return z, None

    scan(step, 0, obs)


def forward(stay, obs=OBS):
    """log p(obs, stay) by the forward algorithm (start state 0, as the models' `z = 0`)."""
    trans = jnp.array([[stay, 1 - stay], [1 - stay, stay]])
    emit = dist.Normal(MEANS, 0.5).log_prob(obs[:, None])  # (T, 2)
    alpha = jnp.log(trans[0]) + emit[0]
    for t in range(1, obs.shape[0]):
        alpha = jax.nn.logsumexp(alpha[:, None] + jnp.log(trans), axis=0) + emit[t]
    return jax.nn.logsumexp(alpha) + dist.Beta(4.0, 1.0).log_prob(stay)


def smoothing(stay, obs=OBS):
    """p(z_t | obs, stay) for each t, by brute force over all 2^T paths."""
    trans = np.array([[stay, 1 - stay], [1 - stay, stay]])
    emit = np.asarray(dist.Normal(MEANS, 0.5).log_prob(obs[:, None]))
    T = obs.shape[0]
    paths = np.array(list(itertools.product(range(2), repeat=T)))
    prev = np.concatenate([np.zeros((len(paths), 1), int), paths[:, :-1]], axis=1)
    logw = np.log(trans[prev, paths]).sum(1) + emit[np.arange(T), paths].sum(1)
    w = np.exp(logw - logw.max())
    w /= w.sum()
    return np.stack([(w[:, None] * (paths == k)).sum(0) for k in range(2)], axis=1), paths[np.argmax(logw)]


@pytest.mark.parametrize("model", [hmm_markov, hmm_scan])
def test_hmm_density_and_gradient_match_the_forward_algorithm(model):
    """Chains of enumerated sites are summed out exactly, even with one `infer` dict shared by
    every site (NumPyro's enum handler writes into it; provi gives each site its own copy)."""
    alg, f = _density(model, OBS)
    for stay in (0.3, 0.8, 0.95):
        v = {"stay": jnp.array(stay)}
        np.testing.assert_allclose(f(v), forward(jnp.array(stay)), rtol=1e-5)
        np.testing.assert_allclose(jax.grad(lambda s: f({"stay": s}))(jnp.array(stay)), jax.grad(forward)(jnp.array(stay)), rtol=1e-4)


def test_hmm_state_draws_are_the_exact_smoothing_marginals_and_map_is_viterbi():
    alg, _ = _density(hmm_markov, OBS)
    res = provi.FitResult.from_state(alg, alg.init(jax.random.PRNGKey(0)))
    stay, n = 0.8, 4000
    draws = res.discrete({"stay": jnp.full((n,), stay)}, seed=4)
    z = np.stack([np.asarray(draws[f"z_{t}"]) for t in range(OBS.shape[0])], axis=1)
    exact, best_path = smoothing(stay)
    for t in range(OBS.shape[0]):
        p = exact[t, 1]
        assert abs(np.mean(z[:, t] == 1) - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-3, (t, np.mean(z[:, t] == 1), p)
    best = res.discrete({"stay": jnp.array([stay])}, temperature=0)
    np.testing.assert_array_equal([int(best[f"z_{t}"][0]) for t in range(OBS.shape[0])], best_path)


def test_scan_hmm_state_draws_are_the_exact_smoothing_marginals_and_map_is_viterbi():
    """A chain written with scan: provi's forward filtering, backward sampling against brute force
    over all 2^8 paths, and its Viterbi path against the most probable path."""
    alg, _ = _density(hmm_scan, OBS)
    assert alg.model.info.chain and not alg.model.info.undrawable
    res = provi.FitResult.from_state(alg, alg.init(jax.random.PRNGKey(0)))
    stay, n = 0.8, 4000
    z = np.asarray(res.discrete({"stay": jnp.full((n,), stay)}, seed=4)["z"])
    assert z.shape == (n, OBS.shape[0])
    exact, best_path = smoothing(stay)
    for t in range(OBS.shape[0]):
        p = exact[t, 1]
        assert abs(np.mean(z[:, t] == 1) - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-3, (t, np.mean(z[:, t] == 1), p)
    # pairs of neighbours too: a joint draw, not independent marginals
    paths = np.array(list(itertools.product(range(2), repeat=OBS.shape[0])))
    trans = np.array([[stay, 1 - stay], [1 - stay, stay]])
    emit = np.asarray(dist.Normal(MEANS, 0.5).log_prob(OBS[:, None]))
    prev = np.concatenate([np.zeros((len(paths), 1), int), paths[:, :-1]], axis=1)
    logw = np.log(trans[prev, paths]).sum(1) + emit[np.arange(OBS.shape[0]), paths].sum(1)
    w = np.exp(logw - logw.max()) / np.exp(logw - logw.max()).sum()
    for t in range(1, OBS.shape[0]):
        p = w[(paths[:, t - 1] == 1) & (paths[:, t] == 0)].sum()
        got = np.mean((z[:, t - 1] == 1) & (z[:, t] == 0))
        assert abs(got - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-3, (t, got, p)
    best = res.discrete({"stay": jnp.array([stay])}, temperature=0)["z"]
    np.testing.assert_array_equal(np.asarray(best[0]), best_path)
    # sample() carries the states, and predictive draws run the scan over the data's length
    assert res.sample(5)["z"].shape == (5, OBS.shape[0])
    x = res.predictive(2000, seed=3)["x"]
    assert x.shape == (2000, OBS.shape[0]) and not np.allclose(x[0], OBS)


def _hmm_beside_a_mixture(obs):
    """The scan HMM, and an enumerated site outside it (one draw from a two-component mixture)."""
    k = numpyro.sample("k", dist.Bernoulli(0.3), infer=ENUM)
    numpyro.sample("y", dist.Normal(3.0 * k, 1.0), obs=2.0)
    hmm_scan(obs)


def _two_sites_per_step(obs):
    """Two enumerated sites in one scan step: NumPyro 0.22's scan cannot enumerate them."""
    stay = numpyro.sample("stay", dist.Beta(4.0, 1.0))
    trans = jnp.array([[stay, 1 - stay], [1 - stay, stay]])

    def step(z_prev, x):
        z = numpyro.sample("z", dist.Categorical(trans[z_prev]), infer=ENUM)
        m = numpyro.sample("m", dist.Bernoulli(0.3), infer=ENUM)
        numpyro.sample("x", dist.Normal(MEANS[z] + 2.0 * m, 0.5), obs=x)
        return z, None

    scan(step, 0, obs)


def test_two_enumerated_sites_in_one_scan_step_fail_with_a_clear_error():
    with pytest.raises(ModelError, match="NumPyro's enumeration cannot run .* one enumerated site per scan step"):
        _density(_two_sites_per_step, OBS)


@pytest.mark.parametrize("model, why", [(_hmm_beside_a_mixture, "not states of the scan chain"),
                                        (hmm_markov, "exponential in the chain's length")])
def test_states_provi_cannot_draw_are_summed_out_but_not_drawn_and_say_so(model, why):
    """An enumerated site beside a scan chain, and a long `markov` chain (NumPyro's infer_discrete
    needs 2^24 states there): summed out exactly (the first against a forward algorithm times the
    mixture's evidence), never filled from their prior; sample() returns the continuous sites
    with a warning."""
    obs = jnp.tile(OBS, 3)
    alg, f = _density(model, obs)
    assert why in alg.model.info.undrawable
    if model is _hmm_beside_a_mixture:
        assert alg.model.info.chain
        stay = jnp.array(0.8)
        mixture = jnp.logaddexp(jnp.log(0.7) + dist.Normal(0.0, 1.0).log_prob(2.0), jnp.log(0.3) + dist.Normal(3.0, 1.0).log_prob(2.0))
        np.testing.assert_allclose(f({"stay": stay}), forward(stay, obs) + mixture, rtol=1e-5)
    res = provi.FitResult.from_state(alg, alg.init(jax.random.PRNGKey(0)))
    with pytest.raises(ModelError, match="cannot draw them yet"):
        res.discrete({"stay": jnp.full((3,), 0.8)})
    with pytest.raises(ModelError, match="cannot draw them yet"):
        res.predictive(3)
    with pytest.warns(UserWarning, match="continuous latent sites only"):
        draws = res.sample(10)
    assert set(draws) == {"stay"}


def batched_hmm(obs):
    """Independent sequences (the rows of `obs`) of the two-state HMM, in a plate."""
    stay = numpyro.sample("stay", dist.Beta(4.0, 1.0))
    trans = jnp.array([[stay, 1 - stay], [1 - stay, stay]])

    def step(z_prev, x):  # NumPyro's scan wants its plates inside the body
        with numpyro.plate("sequences", obs.shape[0], dim=-1):
            z = numpyro.sample("z", dist.Categorical(trans[z_prev]), infer=ENUM)
            numpyro.sample("x", dist.Normal(MEANS[z], 0.5), obs=x)
        return z, None

    scan(step, jnp.zeros(obs.shape[0], jnp.int32), obs.T)


BATCH = jnp.stack([OBS, OBS[::-1] + 0.3, -OBS])  # 3 sequences of length 8


def test_batched_hmms_in_a_plate_match_the_forward_algorithm_per_sequence():
    alg, f = _density(batched_hmm, BATCH)
    assert alg.model.info.chain
    stay = jnp.array(0.7)
    prior = dist.Beta(4.0, 1.0).log_prob(stay)
    exact = prior + sum(forward(stay, o) - prior for o in BATCH)
    np.testing.assert_allclose(f({"stay": stay}), exact, rtol=1e-5)
    np.testing.assert_allclose(jax.grad(lambda s: f({"stay": s}))(stay),
                               jax.grad(lambda s: sum(forward(s, o) for o in BATCH) - 2 * dist.Beta(4.0, 1.0).log_prob(s))(stay), rtol=1e-4)


def test_batched_hmm_states_are_drawn_per_sequence_from_their_smoothing_marginals():
    """Each sequence's states drawn by forward filtering, backward sampling against brute force,
    in the shape NumPyro's scan gives the site ((T, sequences) per draw), and each Viterbi path."""
    alg, _ = _density(batched_hmm, BATCH)
    res = provi.FitResult.from_state(alg, alg.init(jax.random.PRNGKey(0)))
    stay, n = 0.7, 3000
    z = np.asarray(res.discrete({"stay": jnp.full((n,), stay)}, seed=2)["z"])
    assert z.shape == (n, BATCH.shape[1], BATCH.shape[0])
    best = np.asarray(res.discrete({"stay": jnp.array([stay])}, temperature=0)["z"][0])
    for b, obs in enumerate(BATCH):
        exact, best_path = smoothing(stay, obs)
        np.testing.assert_array_equal(best[:, b], best_path)
        for t in range(obs.shape[0]):
            p = exact[t, 1]
            assert abs(np.mean(z[:, t, b] == 1) - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-3, (b, t)


def test_hmm_fit_matches_the_exact_posterior_by_quadrature():
    """The posterior of the HMM's one continuous parameter, on a fine grid with the forward
    algorithm, against provi's default fit (guide="auto")."""
    obs = jnp.concatenate([OBS, OBS + 0.2, OBS[::-1]])
    grid = jnp.linspace(1e-4, 1 - 1e-4, 20_001)
    logp = jax.vmap(lambda s: forward(s, obs))(grid)
    w = np.exp(np.asarray(logp - logp.max()))
    w /= w.sum()
    mean = float((w * grid).sum())
    sd = float(np.sqrt((w * (np.asarray(grid) - mean) ** 2).sum()))
    res = provi.fit(hmm_markov, obs, seed=0, progress=False)
    with pytest.warns(UserWarning, match="continuous latent sites only"):
        draws = res.sample(20_000, seed=1)["stay"]
    assert abs(draws.mean() - mean) < 0.1 * sd, (draws.mean(), mean, sd)
    assert abs(draws.std() / sd - 1) < 0.1, (draws.std(), sd)


def test_elbo_gradient_with_enumerated_sites_is_the_exact_expected_gradient():
    """q(mu) = N(a, s) over a two-component mixture's shared shift: E_q[log p(x, mu)] by
    Gauss-Hermite quadrature (exact here) gives the exact ELBO gradient."""
    x = jnp.array([-0.5, 1.5, 2.2])

    def model(x):
        mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
        with numpyro.plate("n", x.shape[0]):
            z = numpyro.sample("z", dist.Bernoulli(0.4), infer=ENUM)
            numpyro.sample("x", dist.Normal(mu + 2.0 * z, 1.0), obs=x)

    def guide(x):
        a = numpyro.param("a", 0.3)
        s = numpyro.param("s", 0.5, constraint=dist.constraints.positive)
        numpyro.sample("mu", dist.Normal(a, s))

    alg = provi.setup(model, x, guide=guide, objective=provi.ELBO())
    params = alg.init(jax.random.PRNGKey(0)).params
    keys = jax.random.split(jax.random.PRNGKey(1), 8000)
    _, grads = jax.jit(jax.vmap(lambda k: alg.objective_and_grad(params, k)))(keys)

    nodes, weights = np.polynomial.hermite_e.hermegauss(80)

    def exact_elbo(guide_params):
        a, log_s = guide_params["a"], guide_params["s"]
        s = jnp.exp(log_s)  # the positive constraint's unconstrained storage is log s
        mu = a + s * nodes
        lik = jax.nn.logsumexp(jnp.stack([jnp.log(0.6) + dist.Normal(mu[:, None], 1.0).log_prob(x),
                                          jnp.log(0.4) + dist.Normal(mu[:, None] + 2.0, 1.0).log_prob(x)]), axis=0).sum(-1)
        log_joint = dist.Normal(0.0, 2.0).log_prob(mu) + lik
        return jnp.sum(weights * log_joint) / np.sqrt(2 * np.pi) + jnp.log(s) + 0.5 * np.log(2 * np.pi * np.e)

    exact = jax.grad(exact_elbo)(params["guide"])
    for k in ("a", "s"):
        g = np.asarray(grads["guide"][k])
        assert abs(g.mean() - float(exact[k])) < 4 * g.std(ddof=1) / np.sqrt(len(g)) + 1e-4


def test_enumeration_errors_name_the_site():
    def continuous(x):
        numpyro.sample("m", dist.Normal(0.0, 1.0), infer=ENUM)

    def sequential(x):
        numpyro.sample("k", dist.Bernoulli(0.5), infer={"enumerate": "sequential"})

    def huge(x):
        numpyro.sample("k", dist.Categorical(logits=jnp.zeros(5000)), infer=ENUM)

    with pytest.raises(ModelError, match="site 'm' is marked for enumeration"):
        provi.setup(continuous, X)
    with pytest.raises(ModelError, match="'sequential' enumeration"):
        provi.setup(sequential, X)
    with pytest.raises(ModelError, match="site 'k' has 5000 support values"):
        provi.setup(huge, X)

    def guide(x):
        numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
        numpyro.sample("mu", dist.Normal(jnp.zeros(3), 1.0).to_event(1))
        with numpyro.plate("n", x.shape[0]):
            numpyro.sample("z", dist.Categorical(jnp.ones(3) / 3))

    with pytest.raises(ModelError, match="the guide samples site 'z', which the model enumerates"):
        provi.setup(mixture, X, guide=guide)
    alg = provi.setup(mixture, X, guide="meanfield")
    with pytest.raises(ModelError, match="enumerated sites"):
        provi.fit(mixture, X, guide="meanfield", objective=provi.IWAE(k=2, plate="n"), steps=2, progress=False)
    del alg


def _hmm4(obs):
    """4 states, Gaussian emissions, written with scan (the benchmark's HMM)."""
    trans = numpyro.sample("trans", dist.Dirichlet(jnp.ones(4) + 8.0 * jnp.eye(4)).expand([4]).to_event(1))
    means = numpyro.sample("means", dist.Normal(jnp.arange(4.0), 1.0).to_event(1))

    def step(z_prev, x):
        z = numpyro.sample("z", dist.Categorical(trans[z_prev]), infer=ENUM)
        numpyro.sample("x", dist.Normal(means[z], 0.5), obs=x)
        return z, None

    scan(step, 0, obs)


def _hmm4_data(T):
    rng = np.random.default_rng(0)
    states = np.zeros(T, int)
    for t in range(1, T):
        states[t] = states[t - 1] if rng.random() < 0.9 else rng.integers(0, 4)
    return jnp.asarray((states + 0.5 * rng.normal(size=T)).astype(np.float32))


def test_long_scan_hmm_matches_the_forward_algorithm_and_its_memory_is_linear_in_t():
    """T = 1,000: the marginal likelihood against a hand-written forward algorithm; and the compiled
    density's temporary memory at T = 1,000 about twice that at T = 500 (linear, not exponential)."""
    trans = jnp.full((4, 4), 0.1 / 3) + (0.9 - 0.1 / 3) * jnp.eye(4)
    means = jnp.arange(4.0) + 0.1
    v = {"trans": trans, "means": means}
    temp = {}
    for T in (500, 1000):
        obs = _hmm4_data(T)
        alg, f = _density(_hmm4, obs)
        compiled = jax.jit(f).lower(v).compile()
        temp[T] = compiled.memory_analysis().temp_size_in_bytes
        if T == 1000:
            emit = dist.Normal(means, 0.5).log_prob(obs[:, None])
            alpha = jax.lax.scan(lambda a, e: (jax.nn.logsumexp(a[:, None] + jnp.log(trans), 0) + e, None),
                                 jnp.log(trans[0]) + emit[0], emit[1:])[0]
            prior = dist.Dirichlet(jnp.ones(4) + 8.0 * jnp.eye(4)).log_prob(trans).sum() + dist.Normal(jnp.arange(4.0), 1.0).log_prob(means).sum()
            np.testing.assert_allclose(compiled(v), jax.nn.logsumexp(alpha) + prior, rtol=2e-5)
    assert 1.5 < temp[1000] / temp[500] < 2.6, temp


def test_enumeration_past_the_memory_budget_is_refused_before_allocating():
    """Three 64-state sites that one observation depends on, in a plate of 5,000: a factor of
    64^3 x 5,000 floats (5 GiB), refused at setup, naming the site and the plate."""

    def model(y):
        probs = jnp.ones(64) / 64
        loc = numpyro.sample("loc", dist.Normal(0.0, 1.0).expand([64]).to_event(1))
        with numpyro.plate("data", y.shape[0], dim=-1):
            a = numpyro.sample("a", dist.Categorical(probs), infer=ENUM)
            b = numpyro.sample("b", dist.Categorical(probs), infer=ENUM)
            c = numpyro.sample("c", dist.Categorical(probs), infer=ENUM)
            numpyro.sample("y", dist.Normal(loc[a] + loc[b] + loc[c], 1.0), obs=y)

    with pytest.raises(ModelError, match=r"site 'y' would hold a log-density tensor of shape \(64, 64, 64, 5000\).*'data': 5000"):
        provi.setup(model, jnp.zeros(5000), guide="meanfield", init="prior")
