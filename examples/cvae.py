"""A conditional VAE (Sohn et al. 2015): complete the bottom half of a digit from its top half.

x = the top four rows (32 pixels), y = the bottom four. The model has a prior network p(z | x) and a
generation network p(y | x, z); the guide is the recognition network q(z | x, y). All three are
equinox modules learned by provi.fit (prior and generation in the model, recognition in the guide).
The baseline is a deterministic regressor of the same size (no latent), whose conditional
likelihood is exact; a CVAE can do better because the bottom half is multimodal given the top. The CVAE's held-out conditional log-likelihood log p(y | x) is
estimated by importance sampling with k draws from the recognition network.

    python examples/cvae.py [--quick]
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
from vae_common import emit, heldout_ll, load_digits, mlp, parser, train  # noqa: E402

DZ, HALF = 4, 32


def cvae(hidden: int = 128, seed: int = 0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    prior_net, gen_net = mlp(HALF, 2 * DZ, hidden, k1), mlp(HALF + DZ, HALF, hidden, k2)
    rec_net = mlp(2 * HALF, 2 * DZ, hidden, k3)

    def split(out):
        return out[:, :DZ], jax.nn.softplus(out[:, DZ:]) + 1e-4

    def model(images, batch=None):
        prior, gen = provi.nn.module("prior", prior_net), provi.nn.module("generation", gen_net)
        with numpyro.plate("data", images.shape[0], subsample_size=batch) as idx:
            x, y = images[idx, :HALF], images[idx, HALF:]
            z = numpyro.sample("z", dist.Normal(*split(jax.vmap(prior)(x))).to_event(1))
            numpyro.sample("y", dist.Bernoulli(logits=jax.vmap(gen)(jnp.concatenate([x, z], -1))).to_event(1), obs=y)

    def guide(images, batch=None):
        rec = provi.nn.module("recognition", rec_net)
        with numpyro.plate("data", images.shape[0], subsample_size=batch) as idx:
            numpyro.sample("z", dist.Normal(*split(jax.vmap(rec)(images[idx]))).to_event(1))

    return model, guide


def baseline_ll(x_train, x_test, steps, seed):
    """A deterministic regressor p(y | x) = Bernoulli(net(x)) of the generation network's size,
    trained by maximum likelihood with optax (no latent: written directly in JAX)."""
    import equinox as eqx
    import optax

    net = mlp(HALF, HALF, 128, jax.random.PRNGKey(seed + 1))
    params, static = eqx.partition(net, eqx.is_inexact_array)
    opt = optax.adam(1e-3)

    def nll(p, xb):
        logits = jax.vmap(eqx.combine(p, static))(xb[:, :HALF])
        return -jnp.mean(jnp.sum(dist.Bernoulli(logits=logits).log_prob(xb[:, HALF:]), -1))

    @jax.jit
    def step(carry, key):
        p, s = carry
        idx = jax.random.choice(key, x_train.shape[0], (128,), replace=False)
        g = jax.grad(nll)(p, x_train[idx])
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(jax.random.PRNGKey(seed), steps))
    return -float(nll(params, x_test))


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    steps = args.steps or (300 if args.quick else 10_000)
    k_eval = 100 if args.quick else 1000
    x_train, x_test, _, _ = load_digits(args.seed)
    model, guide = cvae(seed=args.seed)
    res, secs = train(model, guide, x_train, provi.ELBO(), steps, batch=128, lr=1e-3, seed=args.seed)
    results = {"steps": steps, "cvae_test_cll": heldout_ll(res, x_test, k_eval), "cvae_train_seconds": secs}
    results["baseline_test_cll"] = baseline_ll(x_train, x_test, steps, args.seed)
    if not all(np.isfinite(v) for v in results.values()):
        raise SystemExit("non-finite result")
    emit(results, args.json)


if __name__ == "__main__":
    main()
