"""Where q(u) starts: the Laplace start (u's mode and curvature) against the whitened prior N(0, I),
on the quick regression and probit classifier of benchmarks/gp.py (N = 4,000, M = 32, Adam,
minibatches of 256, `guide="fullrank"`), three data seeds. provi's default marks the inducing
values `infer={"init": "standard"}`, which starts them at the prior unless the model is Gaussian
in them (`provi.engine.start`). "laplace": the marks switched off; "prior": `init="standard"`;
"default": provi's default, which should equal "laplace" for the regression and "prior" for the
classifier.

    python benchmarks/gp_start.py regression [STEPS]
    python benchmarks/gp_start.py classification [STEPS] [local]   # local: LocalReparam on u
"""

import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import provi
import provi.engine.start as start

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gp as G  # noqa: E402  (benchmarks/gp.py: data, model, metrics)


def main(argv):
    kind = argv[0]
    steps = int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else 1500
    extra = dict(estimators={"u": provi.estimators.LocalReparam()}) if "local" in argv else {}
    marks = start.standard_coordinates
    for seed in (0, 1, 2):
        x, y, xt, yt = G.data(4000, kind, seed=seed)
        z0 = x[np.random.default_rng(1).choice(4000, 32, replace=False)]
        model = G.svgp_model(z0, kind)
        row = []
        for label, keep, init in (("laplace", False, "map"), ("prior", True, "standard"), ("default", True, "map")):
            start.standard_coordinates = marks if keep else (lambda space: np.zeros((space.dim,), bool))
            res = provi.fit(model, jnp.asarray(x), jnp.asarray(y), batch=G.BATCH, guide="fullrank", steps=steps,
                            early_stop=False, seed=0, progress=False, init=init, **extra)
            row.append(f"{label}: test NLL {G.provi_metrics(res, xt, yt, kind)['test_nll']:.4f}, "
                       f"final loss {float(res.losses[-200:].mean()):.2f}")
        start.standard_coordinates = marks
        print(f"{kind} seed {seed}: " + "; ".join(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
