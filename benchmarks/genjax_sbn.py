"""genjax.vi on the sigmoid belief network of examples/discrete_latent.py: time per step, gradient variance.

genjax 0.10.3 pins jax 0.5.3, older than provi's jax, so this script runs in its own virtual
environment and imports neither provi nor numpyro:

    python -m venv /work/genjax-venv && /work/genjax-venv/bin/pip install genjax==0.10.3
    /work/genjax-venv/bin/python benchmarks/genjax_sbn.py x.npy [--params warm.npz] [--quick]

`python benchmarks/estimators.py --genjax-python /work/genjax-venv/bin/python` writes the data
(and its warm-up parameters) and runs this script with the same step counts. The last stdout line
is one JSON object.

The model and guide are those of examples/discrete_latent.py, written as genjax generative
functions: z2 ~ Bernoulli(1/2)^H2, z1 | z2 ~ Bernoulli(sigmoid(z2 U))^H1,
x | z1 ~ Bernoulli(sigmoid(z1 W + b))^D, with U, W, b learned; guide z1 | x and z2 | z1 Bernoulli
with affine logits (V1, c1, V2, c2). Each of the N rows' bits is one vector-valued choice per site.
ELBO with 4 particles (the mean of 4 independent single-draw estimates), Adam(0.03) written out
(genjax ships no optimiser; the same update as optax.adam).

What genjax 0.10.3 offers for Bernoulli sites, checked at every run (`probes`: on this model, with
the error text; `one_flip_gradient_check`: on one flip, against the exact gradient):
  - `genjax.adev.flip_reinforce` takes an elementwise log-density, so on a vector-valued site its
    tangent has the site's shape and tracing fails; REINFORCE is therefore built with
    `genjax.adev.reinforce(sampler, summed log-density)` and wrapped by
    `genjax.vi.adev_distribution` -- the same estimator, one score for the whole site.
  - `genjax.vi.flip_enum` (and, reading its source, `adev.flip_enum_parallel`) re-run the rest
    of the program with one scalar True / False, so they enumerate scalar flips only; per-bit
    scalar sites would nest 2^(6 N) continuations. Not usable here.
  - `genjax.vi.flip_mvd` fails to trace even on a scalar flip in 0.10.3.
  - `genjax.vi.ELBO(genjax.marginal()(guide), make_target)` gives the guide's draw the weight
    `tr.project(~selection)`, which is 0 for the default selection, so its gradient is that of
    E_q[log p(x, z)] without the entropy term. The timed objective is the ELBO written in ADEV's
    own language (`genjax.adev.expectation`: guide score and model density from the traces);
    the shipped `vi.ELBO` is timed as well and reported as a different objective.
  - `genjax.adev.baseline(reinforce)` subtracts a baseline the caller passes in. It is measured
    with b set to the mean objective at the given parameters (as estimators.py sets provi's
    running-average and learned baselines) and held fixed in the timed loop: keeping b current
    needs the objective's value, which ADEV's `grad_estimate` does not return.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import genjax
import jax
import jax.numpy as jnp
import numpy as np
from genjax import ChoiceMapBuilder as C
from genjax import adev
from genjax.inference import Target, marginal
from genjax.inference import vi
from tensorflow_probability.substrates import jax as tfp

from _timing import block, steady_step  # benchmarks/_timing.py: jax only, no provi

tfd = tfp.distributions
H1, H2 = 4, 2
PARTICLES = 4
NAMES = ("U", "W", "b", "V1", "c1", "V2", "c2")  # params: one flat tuple (ADEV differentiates leaves)
GUIDE = slice(3, 7)


def bernoulli_logpdf(v, p):
    return tfd.Bernoulli(probs=p).log_prob(v)


# REINFORCE for a vector of flips: one score, the summed log-density (see the docstring)
reinforce = adev.reinforce(lambda key, p: tfd.Bernoulli(probs=p).sample(seed=key) == 1,
                           lambda v, p: jnp.sum(bernoulli_logpdf(v, p)))
flip_reinforce = vi.adev_distribution(reinforce, bernoulli_logpdf, "flip_reinforce")
# genjax.adev.baseline: the same, with a baseline value b (its first argument) subtracted from the
# objective in the score term; b is the user's to choose and update
flip_reinforce_baseline = vi.adev_distribution(adev.baseline(reinforce), lambda v, b, p: bernoulli_logpdf(v, p), "flip_reinforce_baseline")


@genjax.gen
def model(x, U, W, b, *_guide_params):
    z2 = genjax.flip(0.5 * jnp.ones((x.shape[0], H2))) @ "z2"
    z1 = genjax.bernoulli(logits=z2.astype(x.dtype) @ U) @ "z1"
    genjax.bernoulli(logits=z1.astype(x.dtype) @ W + b) @ "x"


def make_guide(flip):
    @genjax.gen
    def guide(target):
        x, _, _, _, V1, c1, V2, c2, *baseline = target.args  # baseline: (b,) for flip_reinforce_baseline
        z1 = flip(*baseline, jax.nn.sigmoid(x @ V1 + c1)) @ "z1"
        flip(*baseline, jax.nn.sigmoid(z1.astype(x.dtype) @ V2 + c2)) @ "z2"

    return guide


def elbo_adev(guide, x):
    """Gradient estimate of -ELBO in ADEV: -(log p(x, z) - log q(z)), z from the guide's trace."""

    def grad(key, params):
        @adev.expectation
        def neg_elbo(*params):
            target = Target(model, (x, *params), C["x"].set(x))
            tr = guide.simulate(key, (target,))
            log_p, _ = model.assess(tr.get_choices().merge(C["x"].set(x)), target.args)
            return tr.get_score() - log_p

        return neg_elbo.grad_estimate(key, params)

    return grad


def elbo_vi(guide, x):
    """genjax.vi.ELBO as shipped (the guide's weight is 0 here: see the docstring)."""
    est = vi.ELBO(marginal()(guide), lambda *params: Target(model, (x, *params), C["x"].set(x)))
    return lambda key, params: est(key, params)


def particles(grad):
    """The 4-particle estimate: the mean of independent single-draw gradients."""
    return lambda key, params: jax.tree.map(lambda g: g.mean(0), jax.vmap(grad, (0, None))(jax.random.split(key, PARTICLES), params))


def adam(lr=0.03, b1=0.9, b2=0.999, eps=1e-8):
    def init(params):
        zeros = tuple(jnp.zeros_like(p) for p in params)
        return jnp.zeros((), jnp.int32), zeros, zeros

    def step(params, state, grads):
        t, m, v = state
        t = t + 1
        m = tuple(b1 * mi + (1 - b1) * g for mi, g in zip(m, grads))
        v = tuple(b2 * vi_ + (1 - b2) * g * g for vi_, g in zip(v, grads))
        new = tuple(p - lr * (mi / (1 - b1**t)) / (jnp.sqrt(vi_ / (1 - b2**t)) + eps) for p, mi, vi_ in zip(params, m, v))
        return new, (t, m, v)

    return init, step


def step_loop(grad):
    init, update = adam()

    def body(_, st):
        params, opt, key = st
        key, sub = jax.random.split(key)
        params, opt = update(params, opt, grad(sub, params))
        return params, opt, key

    run = jax.jit(lambda st, n: jax.lax.fori_loop(0, n, body, st), static_argnums=1)
    return lambda params, n: run((params, init(params), jax.random.PRNGKey(2)), n)


def grad_variance(grad, params, draws):
    keys = jax.random.split(jax.random.PRNGKey(1), draws)
    g = block(jax.jit(jax.vmap(grad, (0, None)))(keys, params))[GUIDE]
    flat = np.concatenate([np.asarray(a).reshape(draws, -1) for a in g], axis=1)
    var = flat.var(0, ddof=1)
    return {"grad_var_total": float(var.sum()), "grad_var_mean": float(var.mean())}


def elbo_value(guide, x, params, draws=200):
    """Plain Monte Carlo ELBO (no gradients): the baseline's value, and a sanity check of the loop
    (lax.map: genjax's sample primitive has no batching rule outside ADEV)."""

    def one(key):
        target = Target(model, (x, *params), C["x"].set(x))
        tr = guide.simulate(key, (target,))
        log_p, _ = model.assess(tr.get_choices().merge(C["x"].set(x)), target.args)
        return log_p - tr.get_score()

    return float(jnp.mean(jax.jit(lambda k: jax.lax.map(one, k))(jax.random.split(jax.random.PRNGKey(3), draws))))


def one_flip_checks():
    """d(-ELBO)/dp on one flip, q(z) = Bernoulli(p = 0.4), model z ~ Bernoulli(0.3), x ~ N(+-1, 1) at
    x = 0.5, where the exact value is known: flip_enum under the ADEV ELBO and under vi.ELBO, and flip_mvd."""

    @genjax.gen
    def m(p):
        z = genjax.flip(0.3) @ "z"
        genjax.normal(jnp.where(z, 1.0, -1.0), 1.0) @ "x"

    def g(flip):
        return genjax.gen(lambda target: flip(target.args[0]) @ "z")

    obs, p = C["x"].set(0.5), jnp.array(0.4)

    @adev.expectation
    def neg_elbo(p):
        tr = g(vi.flip_enum).simulate(jax.random.PRNGKey(0), (Target(m, (p,), obs),))
        return tr.get_score() - m.assess(tr.get_choices().merge(obs), (p,))[0]

    exact = -(np.log(0.3 / 0.7) + 1.0 - np.log(0.4 / 0.6))  # (log N(.5; 1, 1) - log N(.5; -1, 1) = 1)
    out = {"exact": float(exact)}
    out["flip_enum, ELBO in adev.expectation"] = float(neg_elbo.grad_estimate(jax.random.PRNGKey(0), (p,))[0])
    for name, flip in (("flip_enum", vi.flip_enum), ("flip_mvd", vi.flip_mvd)):
        try:
            est = vi.ELBO(marginal()(g(flip)), lambda p: Target(m, (p,), obs))
            out[f"{name}, genjax.vi.ELBO"] = float(est(jax.random.PRNGKey(0), (p,))[0])
        except Exception as e:  # report, do not hide
            out[f"{name}, genjax.vi.ELBO"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
    return out


def probe(make_grad, params):
    """Trace one gradient (no compile): 'ok' or the error text."""
    try:
        jax.eval_shape(make_grad(), jax.random.PRNGKey(0), params)
        return "ok"
    except Exception as e:  # report, do not hide
        return f"{type(e).__name__}: {e}".splitlines()[0][:300]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("x", help=".npy file with the binary data matrix (rows x dims)")
    ap.add_argument("--params", default=None, help=".npz with U W b V1 c1 V2 c2 (default: zeros, provi's initial values)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n-long", type=int, default=None)
    ap.add_argument("--n-short", type=int, default=None)
    ap.add_argument("--draws", type=int, default=None)
    args = ap.parse_args(argv)
    n_long = args.n_long or (40 if args.quick else 200)
    n_short = args.n_short or (10 if args.quick else 50)
    draws = args.draws or (64 if args.quick else 200)

    x = jnp.asarray(np.load(args.x), jnp.float32)
    d = x.shape[1]
    shapes = {"U": (H2, H1), "W": (H1, d), "b": (d,), "V1": (d, H1), "c1": (H1,), "V2": (H1, H2), "c2": (H2,)}
    if args.params:
        with np.load(args.params) as f:
            params = tuple(jnp.asarray(f[k], jnp.float32) for k in NAMES)
        where = "the parameters in --params (estimators.py: provi's warm-up fit)"
    else:
        params = tuple(jnp.zeros(shapes[k], jnp.float32) for k in NAMES)
        where = "zeros (provi's initial values)"
    assert all(p.shape == shapes[k] for k, p in zip(NAMES, params)), [p.shape for p in params]

    guide = make_guide(flip_reinforce)
    report = {
        "versions": {"genjax": genjax.__version__, "jax": jax.__version__, "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "backend": jax.default_backend(), "devices": jax.device_count()},
        "model": {"rows": int(x.shape[0]), "dims": int(d), "latents_per_row": [H1, H2], "particles": PARTICLES},
        "optimizer": "Adam(lr=0.03, b1=0.9, b2=0.999, eps=1e-8), written out (genjax ships none)",
        "step_s": f"seconds per step (4-particle gradient + Adam update) in a jitted fori_loop; (median of 3 runs of {n_long} - median of 3 runs of {n_short}) / {n_long - n_short}",
        "gradient_variance": f"per-coordinate variance of the guide-parameter gradient (V1, c1, V2, c2) of the 4-particle estimate over {draws} draws, at {where}; total = sum over coordinates",
        "probes": {
            "genjax.adev.flip_reinforce (built in, vector site)": probe(lambda: elbo_adev(make_guide(vi.adev_distribution(adev.flip_reinforce, bernoulli_logpdf, "f")), x), params),
            "genjax.vi.flip_enum (vector site)": probe(lambda: elbo_adev(make_guide(vi.flip_enum), x), params),
            "genjax.vi.flip_mvd (vector site)": probe(lambda: elbo_adev(make_guide(vi.flip_mvd), x), params),
        },
        "one_flip_gradient_check": one_flip_checks(),
    }
    print(f"genjax {genjax.__version__} (jax {jax.__version__}): probes {report['probes']}", file=sys.stderr)
    print(f"  one flip, d(-ELBO)/dp: {report['one_flip_gradient_check']}", file=sys.stderr)
    elbo = elbo_value(guide, x, params)
    plain = "REINFORCE, no baseline: genjax.adev.reinforce on each vector site (z1, z2)"
    runs = {  # name: (gradient estimate, parameters, what each site uses)
        "reinforce (ELBO in genjax.adev.expectation)": (elbo_adev(guide, x), params, plain),
        "reinforce + baseline (adev.baseline, b fixed at the mean objective)": (
            elbo_adev(make_guide(flip_reinforce_baseline), x), params + (jnp.asarray(-elbo),),
            "genjax.adev.baseline(reinforce) on each site, b = the mean of -ELBO at these parameters, held fixed "
            "in the timed loop too (updating it needs the objective's value, which grad_estimate does not return)"),
        "reinforce (genjax.vi.ELBO as shipped: no entropy term, not the ELBO)": (elbo_vi(guide, x), params, plain),
    }
    out = {}
    for name, (g, start, what) in runs.items():
        grad = particles(g)
        loop = step_loop(grad)
        row = {"site_estimator": what}
        row.update(grad_variance(grad, start, draws))
        row["step_s"] = steady_step(lambda n: block(loop(start, n)), n_long, n_short)
        if name.startswith("reinforce (ELBO"):
            trained = block(loop(params, n_long))[0]
            row["elbo_before"], row["elbo_after_n_long_steps"] = elbo, elbo_value(guide, x, trained)
        out[name] = row
        print(f"  genjax {name}: {row}", file=sys.stderr)
    report["genjax"] = out
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
