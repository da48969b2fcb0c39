"""VAEs with discrete latents on binarised digits (Jang et al. 2017).

Model: each image has a class c ~ OneHotCategorical(10), a one-hot vector (and, in the joint model,
a Gaussian code z ~ N(0, I_4)); its pixels are Bernoulli with logits decoder(c[, z]). The guide is an
encoder q(c | x)[ q(z | x)]. The discrete site's gradient is chosen per site with a provi estimator,
the model left as it is:

- gumbel:     provi.estimators.GumbelSoftmax(0.5, straight_through=False)
              (the decoder sees the relaxed vector; biased)
- gumbel_st:  provi.estimators.GumbelSoftmax(0.5)  (straight-through: hard one-hot forward, the
              relaxed gradient backward; biased)
- reinforce:  provi.estimators.Reinforce()                       (score function, unbiased)
- vimco:      provi.VIMCO(k=8, plate="data") with Reinforce      (multi-sample score function, per image)
- enumerate:  provi.estimators.Enumerate() with provi.ELBO(plate="data")   (exact sum over the 10
              classes: the ELBO declares each image's terms, so the objective is re-run once per
              class for the whole minibatch, not once per class and image)
- joint:      continuous and discrete latents together, c enumerated, z reparameterised

Held-out log-likelihood: exact for the discrete model (a sum over the 10 classes), importance
sampled (k draws from the guide) for the joint model. A method whose estimator does not apply to
the site would be reported as unsupported, with provi's error.

    python examples/vae_discrete.py [--quick] [--methods gumbel,reinforce,...]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402

import provi  # noqa: E402
from provi.distributions import OneHotCategorical  # noqa: E402
from provi.core.bound import BoundModel, KeyStream  # noqa: E402
from vae_common import emit, heldout_ll, load_digits, mlp, parser, train  # noqa: E402

K = 10
METHODS = ("gumbel", "gumbel_st", "reinforce", "vimco", "enumerate", "joint")


def discrete_vae(dz: int = 0, hidden: int = 128, d_x: int = 64, seed: int = 0):
    """`(model, guide)`: a class c (and a Gaussian code z when dz > 0) per image."""
    k_enc, k_dec = jax.random.split(jax.random.PRNGKey(seed))
    encoder, decoder = mlp(d_x, K + 2 * dz, hidden, k_enc), mlp(K + dz, d_x, hidden, k_dec)

    def model(x, batch=None):
        dec = provi.nn.module("decoder", decoder)
        with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
            h = numpyro.sample("c", OneHotCategorical(probs=jnp.full((K,), 1.0 / K)))
            if dz:
                z = numpyro.sample("z", dist.Normal(0, 1).expand([dz]).to_event(1))
                h = jnp.concatenate([h, z], -1)
            numpyro.sample("x", dist.Bernoulli(logits=jax.vmap(dec)(h)).to_event(1), obs=x[idx])

    def guide(x, batch=None):
        enc = provi.nn.module("encoder", encoder)
        with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
            out = jax.vmap(enc)(x[idx])
            numpyro.sample("c", OneHotCategorical(logits=out[:, :K]))
            if dz:
                numpyro.sample("z", dist.Normal(out[:, K : K + dz], jax.nn.softplus(out[:, K + dz :]) + 1e-4).to_event(1))

    return model, guide


def exact_ll(res, x_test) -> float:
    """Mean log p(x) over held-out images, summing the class out exactly (discrete-only model)."""
    model = BoundModel(res.model, res.params["model"], KeyStream(jax.random.PRNGKey(0)), (x_test,), {"batch": None})
    cs = jnp.broadcast_to(jnp.eye(K)[:, None, :], (K, x_test.shape[0], K))
    local = provi.nn.pointwise_density(model, {"c": cs}).local  # (K, N): log p(c) + log p(x | c)
    return float(jnp.mean(jax.nn.logsumexp(local, axis=0)))


def setup(method: str):
    """(estimators, objective, dz) for a method; raises AttributeError when this build lacks a piece."""
    est = provi.estimators
    if method == "gumbel":
        return {"c": est.GumbelSoftmax(temperature=0.5, straight_through=False)}, provi.ELBO(), 0
    if method == "gumbel_st":
        return {"c": est.GumbelSoftmax(temperature=0.5)}, provi.ELBO(), 0
    if method == "reinforce":
        return {"c": est.Reinforce()}, provi.ELBO(), 0
    if method == "vimco":
        return {"c": est.Reinforce()}, provi.VIMCO(k=8, plate="data"), 0
    if method == "enumerate":  # plate="data": each image's terms declared, so c's 10 classes are one re-run each
        return {"c": est.Enumerate()}, provi.ELBO(plate="data"), 0
    if method == "joint":
        return {"c": est.Enumerate(), "z": est.Reparam()}, provi.ELBO(plate="data"), 4
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join(METHODS))
    args = p.parse_args()
    steps = args.steps or (200 if args.quick else 10_000)
    x_train, x_test, _, _ = load_digits(args.seed)
    results = {"steps": steps}
    for method in args.methods.split(","):
        try:
            estimators, objective, dz = setup(method)
        except AttributeError as exc:
            results[f"{method}_skipped"] = f"not in this build of provi ({exc})"
            continue
        model, guide = discrete_vae(dz=dz, seed=args.seed)
        try:
            res, secs = train(model, guide, x_train, objective, steps, batch=128, lr=1e-3, seed=args.seed, estimators=estimators)
        except provi.errors.EstimatorError as exc:
            results[f"{method}_unsupported"] = str(exc)
            continue
        ll = exact_ll(res, x_test) if dz == 0 else heldout_ll(res, x_test, 100 if args.quick else 1000)
        results[f"{method}_test_ll"] = ll
        results[f"{method}_train_seconds"] = secs
        if not np.isfinite(ll):
            raise SystemExit(f"{method}: non-finite held-out log-likelihood")
    emit(results, args.json)


if __name__ == "__main__":
    main()
