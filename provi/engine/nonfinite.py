"""Naming what went non-finite when a fit's loss turns NaN or infinite."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from provi.core.bound import KeyStream
from provi.core.trace import constrain_params, run, site_log_prob
from provi.engine.layout import join_data
from provi.engine.schedule import StopInfo
from provi.engine.step import step_key

__all__ = ["diagnose_nonfinite"]


def _nonfinite_leaves(tree) -> list[str]:
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not bool(jnp.all(jnp.isfinite(leaf))):
            out.append(jax.tree_util.keystr(path))
    return out


def _nonfinite_sites(runner, state, consts, data, key) -> list[str]:
    """Model and guide sites whose log density is not finite at the bad step's draw."""
    model_prog, guide_prog = runner.model, runner.guide
    args, kwargs = join_data(data, runner.layout)
    keys = KeyStream(key)
    z, log_q = guide_prog.sim(state.params["guide"], consts, keys(), 1, args, kwargs, [])
    z1 = jax.tree.map(lambda x: x[0], z)
    fixed = constrain_params(state.params["model"], model_prog.info.params)
    tr = run(model_prog.model, keys(), args, kwargs, {**fixed, **z1})
    bad = []
    for name, site in tr.items():
        if site["type"] == "sample":
            lp = site_log_prob(site, scaled=False)
            if not bool(jnp.isfinite(lp)):
                bad.append(f"model site {name!r} (log density {float(lp)})")
    for name, v in z1.items():
        if not bool(jnp.all(jnp.isfinite(v))):
            bad.append(f"guide draw of {name!r} is not finite")
    if not bool(jnp.all(jnp.isfinite(log_q))):
        bad.append("the guide's log density is not finite")
    return bad


def diagnose_nonfinite(runner, state, consts, data, bad_step: int, objective) -> StopInfo:
    """Explain the first non-finite loss: which parameters' gradients and which sites went bad."""
    pair = step_key(state.key, state.step)
    (_, value), grads = runner.grad(state.params, consts, pair, data)
    params = _nonfinite_leaves(grads)
    try:
        with warnings.catch_warnings():  # NumPyro's out-of-support warnings: the message below names the sites
            warnings.simplefilter("ignore")
            sites = _nonfinite_sites(runner, state, consts, data, pair)
    except Exception as exc:  # naming the site is best effort; the stop itself is not
        sites = [f"(could not trace the sites: {exc})"]
    parts = [f"the loss of objective {objective!r} became non-finite at step {bad_step}"]
    if sites:
        parts.append("non-finite: " + "; ".join(sites))
    if params:
        parts.append("non-finite gradient of parameter(s) " + ", ".join(params))
    parts.append(
        f"returning the last finite state (step {int(state.step)}). Try a smaller learning rate, "
        "init='map', a different guide, or jax.config.update('jax_enable_x64', True)"
    )
    return StopInfo(reason="nonfinite", steps=int(state.step), bad_step=bad_step, message=". ".join(parts))
