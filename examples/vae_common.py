"""Shared pieces of the VAE examples: data, networks, model and guide, objectives, evaluation.

Data: scikit-learn's bundled 8x8 digits (1,797 images, shipped inside the package: nothing is
downloaded), binarised at half intensity, split 1,497 train / 300 test with a fixed seed.
"""

from __future__ import annotations

import argparse
import json
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import provi

N_TEST = 300


def load_digits(seed: int = 0):
    """Binarised 8x8 digits: (x_train (1497, 64), x_test (300, 64), y_train, y_test) float32/int32."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError as exc:  # pragma: no cover
        raise SystemExit("the VAE examples need scikit-learn for its bundled digits: pip install 'provi[examples]'") from exc
    d = _load()
    x = (d.data >= 8).astype(np.float32)
    perm = np.random.default_rng(seed).permutation(len(x))
    x, y = x[perm], d.target[perm].astype(np.int32)
    return jnp.asarray(x[N_TEST:]), jnp.asarray(x[:N_TEST]), jnp.asarray(y[N_TEST:]), jnp.asarray(y[:N_TEST])


def mlp(n_in: int, n_out: int, hidden: int, key) -> eqx.nn.MLP:
    return eqx.nn.MLP(n_in, n_out, hidden, depth=2, activation=jnp.tanh, key=key)


def gaussian_vae(dz: int = 8, hidden: int = 128, d_x: int = 64, seed: int = 0):
    """`(model, guide)` of a VAE with Gaussian latents z (dz) and Bernoulli pixels x (d_x).

    Both take `(x, batch=None, beta=1.0)`: `batch` is the minibatch size (None: the whole data),
    `beta` scales the latent's prior and posterior terms (beta-VAE; 1 is the plain VAE).
    """
    k_enc, k_dec = jax.random.split(jax.random.PRNGKey(seed))
    encoder, decoder = mlp(d_x, 2 * dz, hidden, k_enc), mlp(dz, d_x, hidden, k_dec)

    def model(x, batch=None, beta=1.0):
        dec = provi.nn.module("decoder", decoder)
        with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
            with numpyro.handlers.scale(scale=beta):
                z = numpyro.sample("z", dist.Normal(0, 1).expand([dz]).to_event(1))
            numpyro.sample("x", dist.Bernoulli(logits=jax.vmap(dec)(z)).to_event(1), obs=x[idx])

    def guide(x, batch=None, beta=1.0):
        enc = provi.nn.module("encoder", encoder)
        with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
            out = jax.vmap(enc)(x[idx])
            loc, scale = out[:, :dz], jax.nn.softplus(out[:, dz:]) + 1e-4
            with numpyro.handlers.scale(scale=beta):
                numpyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return model, guide


# --- training and evaluation ------------------------------------------------------------------
def train(model, guide, x, objective, steps: int, batch: int, lr: float = 1e-3, seed: int = 0, **kwargs):
    """Fit with Adam; returns the FitResult and seconds spent."""
    import optax

    t = time.perf_counter()
    res = provi.fit(model, x, guide=guide, objective=objective, optimizer=optax.adam(lr), steps=steps,
                    seed=seed, progress=False, batch=batch, **kwargs)
    return res, time.perf_counter() - t


def heldout_ll(res, x_test, k: int, **kwargs) -> float:
    """Mean held-out log p(x) (nats per example), importance sampling with k guide draws."""
    chunk = min(k, 100)
    return float(np.mean(provi.nn.log_likelihood(res, x_test, k=k, chunk=chunk, batch=None, **kwargs)))


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--quick", action="store_true", help="a few hundred steps (seconds): a smoke run")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the results as one JSON line at the end")
    p.add_argument("--seed", type=int, default=0)
    return p


def emit(results: dict, as_json: bool) -> None:
    for k, v in results.items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    if as_json:
        print(json.dumps(results))
