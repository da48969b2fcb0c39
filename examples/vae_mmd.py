"""InfoVAE / MMD-VAE (Zhao et al. 2019) and beta-VAE (Higgins et al. 2017), with posterior-collapse
diagnostics: KL per latent unit and active units, as `FitResult.diagnostics()` reports them.

- beta-VAE: the plain model and guide with the latent's terms scaled by beta (NumPyro's `scale`
  handler around the latent site), trained with provi.ELBO(): E[log p(x|z)] - beta KL(q || p).
- MMD-VAE: E_q[log p(x | z)] - lambda * MMD(q(z), p(z)), the MMD between the minibatch's codes and
  as many prior draws (RBF kernel), written below as a user objective with provi's vocabulary.

A large beta pushes units to collapse (fewer active units, KL near 0 on them); the MMD-VAE keeps
the codes informative while matching the aggregate posterior to the prior.

    python examples/vae_mmd.py [--quick]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import provi  # noqa: E402
from provi.nn import pointwise_density  # noqa: E402
from vae_common import emit, gaussian_vae, heldout_ll, load_digits, parser, train  # noqa: E402


def rbf_mmd(a, b):
    """Squared MMD between samples a (n, d) and b (m, d), RBF kernel of bandwidth 2 d (biased V-statistic)."""
    def k(x, y):
        d2 = jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, -1)
        return jnp.exp(-d2 / (2.0 * x.shape[-1]))

    return jnp.mean(k(a, a)) + jnp.mean(k(b, b)) - 2 * jnp.mean(k(a, b))


@provi.objective
def mmd_vae(model, guide, *args, lam: float = 100.0, site: str = "z", plate: str = "data"):
    """E_q[log p(x | z)] - lam * N * MMD(q(z), N(0, I)) for a standard-normal latent `site`."""
    z, _ = provi.sim(guide, *args)
    p = pointwise_density(model, z, plate=plate)
    codes = z[site]
    log_prior = jnp.sum(jax.scipy.stats.norm.logpdf(codes), axis=-1)
    recon = p.scale * jnp.sum(p.local - log_prior)  # log p(x_n | z_n), summed and scaled to the data set
    prior = jax.random.normal(guide.keys(), codes.shape, codes.dtype)
    n_total = p.scale * codes.shape[0]
    return recon - lam * n_total * rbf_mmd(codes, prior)


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    steps = args.steps or (300 if args.quick else 10_000)
    k_eval = 100 if args.quick else 1000
    x_train, x_test, _, _ = load_digits(args.seed)
    results = {"steps": steps}
    runs = (("vae", provi.ELBO(), 1.0), ("beta4_vae", provi.ELBO(), 4.0), ("mmd_vae", mmd_vae(lam=100.0), 1.0))
    for name, objective, beta in runs:
        model, guide = gaussian_vae(dz=8, seed=args.seed)
        res, secs = train(model, guide, x_train, objective, steps, batch=128, lr=1e-3, seed=args.seed, beta=beta)
        collapse = res.diagnostics(n=100).collapse
        unit = collapse.sites["z"]
        print(f"--- {name} ---\n{collapse}")
        results[f"{name}_active_units"] = unit.active_units
        results[f"{name}_kl_nats"] = float(unit.kl.sum())
        results[f"{name}_test_ll"] = heldout_ll(res, x_test, k_eval, beta=1.0)
    emit(results, args.json)


if __name__ == "__main__":
    main()
