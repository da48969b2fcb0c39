"""Watching a fit: convergence of the loss, and naming what went non-finite."""

from __future__ import annotations

import warnings

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from provi.result import StopInfo

__all__ = ["Convergence", "diagnose_nonfinite"]


@dataclasses.dataclass
class Convergence:
    """Stop when the mean loss over the last `window` steps is no lower than over the window before,
    beyond `z` standard errors of the difference, at `patience` checks in a row."""

    window: int
    z: float = 2.0
    patience: int = 2
    _calm: int = 0
    _checked: int = 0

    @classmethod
    def for_steps(cls, steps: int) -> "Convergence":
        return cls(window=int(min(2000, max(200, steps // 20))))

    def converged(self, losses: np.ndarray) -> bool:
        w = self.window
        if len(losses) < 2 * w or len(losses) - self._checked < w:
            return False
        self._checked = len(losses)
        last, prev = losses[-w:], losses[-2 * w : -w]
        se = np.sqrt(np.var(prev) / w + np.var(last) / w)
        improving = np.mean(prev) - np.mean(last) > self.z * se
        self._calm = 0 if improving else self._calm + 1
        return self._calm >= self.patience


def _nonfinite_leaves(tree) -> list[str]:
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not bool(jnp.all(jnp.isfinite(leaf))):
            out.append(jax.tree_util.keystr(path))
    return out


def _nonfinite_sites(runner, state, consts, data, key) -> list[str]:
    """Model and guide sites whose log density is not finite at the bad step's draw."""
    from numpyro import handlers

    from provi.core.vocab import KeyStream
    from provi.guides.program import constrain_params
    from provi.loop import join_data

    model_prog, guide_prog = runner.model, runner.guide
    args, kwargs = join_data(data, runner.layout)
    keys = KeyStream(key)
    z, log_q = guide_prog.sim(state.params["guide"], consts, keys(), 1, args, kwargs, [])
    z1 = jax.tree.map(lambda x: x[0], z)
    fixed = constrain_params(state.params["model"], model_prog.info.params)
    tr = handlers.trace(handlers.substitute(handlers.seed(model_prog.model, keys()), data={**fixed, **z1})).get_trace(*args, **kwargs)
    bad = []
    for name, site in tr.items():
        if site["type"] == "sample":
            lp = site["fn"].log_prob(site["value"])
            if not bool(jnp.all(jnp.isfinite(lp))):
                bad.append(f"model site {name!r} (log density {float(jnp.sum(lp))})")
    for name, v in z1.items():
        if not bool(jnp.all(jnp.isfinite(v))):
            bad.append(f"guide draw of {name!r} is not finite")
    if not bool(jnp.all(jnp.isfinite(log_q))):
        bad.append("the guide's log density is not finite")
    return bad


def diagnose_nonfinite(runner, state, consts, data, bad_step: int, objective) -> StopInfo:
    """Explain the first non-finite loss: which parameters' gradients and which sites went bad."""
    key = state.key
    from provi.loop import step_keys

    key, sub = step_keys(key)
    (_, value), grads = runner.grad(state.params, consts, sub, data)
    params = _nonfinite_leaves(grads)
    try:
        with warnings.catch_warnings():  # NumPyro's out-of-support warnings: the message below names the sites
            warnings.simplefilter("ignore")
            sites = _nonfinite_sites(runner, state, consts, data, sub)
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
