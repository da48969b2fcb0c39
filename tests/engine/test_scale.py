"""Data parallel fits on 4 forced CPU devices give the same gradients and fits as on one device.

XLA_FLAGS must be set before JAX starts, so each check runs in a fresh Python process.
"""

import os
import subprocess
import sys
import textwrap


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PRELUDE = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import warnings
    warnings.simplefilter("error")
    import jax, jax.numpy as jnp, numpy as np, numpyro, numpyro.distributions as dist
    import provi
    assert len(jax.devices()) == 4

    rng = np.random.default_rng(0)
    N, D = 2000, 3
    X = rng.normal(size=(N, D)).astype(np.float32)
    Yb = (rng.random(N) < 1 / (1 + np.exp(-X @ np.array([1.0, -1.0, 0.5])))).astype(np.float32)
    Xj, Yj = jnp.asarray(X), jnp.asarray(Yb)

    def logreg(x, y, b=None):
        w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
        with numpyro.plate("n", x.shape[0], subsample_size=b) as idx:
            numpyro.sample("y", dist.Bernoulli(logits=x[idx] @ w), obs=y[idx])

    def close(a, b, rtol=2e-4, atol=2e-5):
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol)
    """
)


def run(body: str, timeout: int = 300) -> str:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body) + "\nprint('OK')"],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


def test_gradients_equal_on_1_and_4_devices():
    run(
        """
        from provi.programs import make_guide
        from provi.core.model import inspect_model
        from provi.programs import ModelProgram
        from provi.engine.layout import split_data
        from provi.engine.loss import make_loss
        from provi.engine.parallel import make_mesh, place, replicate
        for b in (None, 200):
            args, kwargs = (Xj, Yj), {"b": b}
            info = inspect_model(logreg, args, kwargs)
            mp = ModelProgram(logreg, info)
            gp = make_guide("fullrank", info, args, kwargs, jax.random.PRNGKey(0), None)
            data, layout = split_data(args, kwargs)
            loss = jax.jit(jax.grad(lambda p, k, d: make_loss(mp, gp, provi.ELBO(num_particles=4), layout)(p, consts, k, d)[0]))
            consts = gp.consts(jnp.zeros(D), jnp.eye(D))
            params = {"model": {}, "guide": gp.init_params(jax.random.PRNGKey(1))}
            mesh = make_mesh(4)
            sharded = place(data, mesh, {N})
            assert sharded[0].sharding.spec[0] == "data", sharded[0].sharding
            for k in range(3):
                key = jax.random.PRNGKey(k)
                g1 = loss(params, key, data)
                g4 = loss(replicate(params, mesh), replicate(key, mesh), sharded)
                close(g1, g4, rtol=1e-5, atol=1e-5)
        """
    )


def test_fits_equal_on_1_and_4_devices():
    run(
        """
        from jax.sharding import Mesh
        for b, forms in ((None, (4, 1)), (100, (4, jax.devices(), Mesh(np.asarray(jax.devices()), ("dp",))))):
            opts = dict(b=b, guide="fullrank", steps=300, seed=4, progress=False)
            one = provi.fit(logreg, Xj, Yj, **opts)
            for devices in forms:
                four = provi.fit(logreg, Xj, Yj, devices=devices, **opts)
                assert len(four.data[0].sharding.device_set) == (1 if devices == 1 else 4)
                close(one.params, four.params)
                np.testing.assert_allclose(one.losses, four.losses, rtol=1e-4, atol=1e-3)
        """
    )


def test_numpyro_guide_and_batches_equal_on_1_and_4_devices():
    run(
        """
        def model(y, b=None):
            m = numpyro.sample("m", dist.Normal(0, 3))
            with numpyro.plate("n", y.shape[0], subsample_size=b) as idx:
                z = numpyro.sample("z", dist.Normal(m, 1.0))
                numpyro.sample("y", dist.Normal(z, 1.0), obs=y[idx])

        def guide(y, b=None):
            a = numpyro.param("a", 0.0)
            loc = numpyro.param("loc", jnp.zeros(y.shape[0]))
            numpyro.sample("m", dist.Normal(a, 0.3))
            with numpyro.plate("n", y.shape[0], subsample_size=b) as idx:
                numpyro.sample("z", dist.Normal(loc[idx], 0.5))

        y = jnp.asarray(rng.normal(2.0, 1.5, size=400), dtype=jnp.float32)
        one = provi.fit(model, y, b=40, guide=guide, steps=300, seed=1, progress=False)
        four = provi.fit(model, y, b=40, guide=guide, steps=300, seed=1, progress=False, devices=4)
        close(one.params, four.params)

        def stream(x, y, n):
            w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
            with numpyro.plate("n", n, subsample_size=x.shape[0]):
                numpyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)

        fits = [provi.fit(stream, n=N, batches=provi.Batches(X, Yb, batch_size=100, seed=2), guide="meanfield",
                          steps=700, seed=1, progress=False, devices=d) for d in (None, 4)]
        close(fits[0].params, fits[1].params)
        """
    )
