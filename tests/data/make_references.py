"""Reference posterior moments of the models in provi/examples/hard.py (the horseshoe in its
non-centred form and the HMM with its states summed out by a hand-written forward algorithm: the
same posteriors; the Lotka-Volterra model needs diffrax), and of the enumerated mixture and
Dawid-Skene models of provi/examples/enumerated.py, by NUTS (4 chains of 5,000 draws after 2,000
warm-up steps, target acceptance 0.99, float64), written as <name>_reference.json next to this
script: `python tests/data/make_references.py [NAME ...]` (all of them by default)."""

import json
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402
from numpyro.diagnostics import summary  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

from provi.examples.enumerated import annotation, annotation_data, mixture, mixture_data  # noqa: E402
from provi.examples.hard import (gp_data, gp_hyper, gp_poisson, gp_poisson_data, hmm_data, hmm_marginal, holt_winters,  # noqa: E402
                                 horseshoe_data, horseshoe_noncentered, lotka_volterra, lotka_volterra_data, series)

MODELS = {"holt_winters": (holt_winters, (series(),)), "gp_hyper": (gp_hyper, gp_data()),
          "horseshoe": (horseshoe_noncentered, horseshoe_data()),  # the horseshoe's beta non-centred for NUTS
          "gp_poisson": (gp_poisson, gp_poisson_data()),
          "hmm": (hmm_marginal, (hmm_data(),)),  # the HMM's states summed out by hand: the same posterior
          "lotka_volterra": (lotka_volterra, (lotka_volterra_data(),)),
          "mixture": (mixture, (mixture_data(),)), "dawid_skene": (annotation, annotation_data()[:1])}

for name, (model, args) in MODELS.items():
    if sys.argv[1:] and name not in sys.argv[1:]:
        continue
    mcmc = MCMC(NUTS(model, target_accept_prob=0.99), num_warmup=2000, num_samples=5000, num_chains=4,
                chain_method="sequential", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), *(np.asarray(a, np.float64) if np.issubdtype(np.asarray(a).dtype, np.floating) else np.asarray(a)
                                      for a in args))
    stats = summary(mcmc.get_samples(group_by_chain=True))
    out = {"method": "NUTS, 4 chains x 5,000 draws after 2,000 warm-up, target_accept_prob 0.99, float64",
           "divergences": int(np.sum(mcmc.get_extra_fields()["diverging"])), "sites": {}}
    for site, s in stats.items():
        out["sites"][site] = {key: np.asarray(s[stat]).tolist() for key, stat in
                              (("mean", "mean"), ("sd", "std"), ("n_eff", "n_eff"), ("r_hat", "r_hat"))}
    (Path(__file__).resolve().parent / f"{name}_reference.json").write_text(json.dumps(out, indent=1))
    print(name, "divergences", out["divergences"], {k: (v["mean"], v["sd"], v["r_hat"]) for k, v in out["sites"].items()})
