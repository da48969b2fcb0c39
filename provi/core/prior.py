"""A fitted Gaussian (over the unconstrained latent vector) as the prior of chosen latent sites:
the posterior that becomes the next prior, for sequential Bayesian updating.

`GaussianPrior(model, space, names, mean, cov)` is a NumPyro handler. Each named site's prior is
replaced by its conditional given the named sites before it, in the fitted order: the chain rule of
the joint N(mean, cov) restricted to the named sites, each block mapped to the site's support by
its bijection, so `model` keeps every other site, its plates and its data unchanged. A diagonal
covariance (a mean-field fit) gives each site independent normals, at O(D) per evaluation.

    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from provi.core.model import inspect_model
    >>> from provi.core.space import LatentSpace
    >>> def model():
    ...     numpyro.sample("s", dist.HalfNormal(1.0))
    >>> space = LatentSpace.of(inspect_model(model, (), {}).latents)
    >>> new = GaussianPrior(model, space, ("s",), jnp.array([0.5]), jnp.array([[0.04]]))
    >>> site = numpyro.handlers.trace(numpyro.handlers.seed(new, 0)).get_trace()["s"]
    >>> round(float(site["fn"].log_prob(jnp.exp(0.5))), 2)  # log N(log s; 0.5, 0.2^2) - log s at log s = 0.5
    0.19
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.primitives import Messenger

from provi.core.space import LatentSpace
from provi.errors import ModelError

__all__ = ["GaussianPrior"]


class GaussianPrior(Messenger):
    """Replace the priors of the latent sites `names` of `model` by N(mean, cov) over their flat
    unconstrained values (`mean`, `cov` over the whole of `space`, in its order)."""

    def __init__(self, fn: Callable, space: LatentSpace, names, mean, cov):
        unknown = [n for n in names if n not in space.names]
        if unknown:
            raise ModelError(f"as_prior: {unknown} are not continuous latent sites of the fitted model (it has {list(space.names)})")
        self.space = space
        self.names = tuple(n for n in space.names if n in set(names))  # the fitted order
        off = space.offsets
        index = {s.name: np.arange(off[i], off[i + 1]) for i, s in enumerate(space.sites)}
        self.blocks = []  # (name, slice into the named sub-vector)
        rows, start = [], 0
        for n in self.names:
            rows.append(index[n])
            self.blocks.append((n, slice(start, start + len(index[n]))))
            start += len(index[n])
        rows = np.concatenate(rows) if rows else np.zeros((0,), int)
        mean, cov = jnp.asarray(mean), jnp.asarray(cov)
        self.mean = mean[rows]
        sub = np.asarray(cov)[np.ix_(rows, rows)]
        # a diagonal covariance (a mean-field fit): independent normals per site, no dense factor
        # (whose solves would cost O(D^2) per step of the next fit, for a network's many weights)
        self.sd = np.sqrt(np.diag(sub)) if np.count_nonzero(sub - np.diag(np.diag(sub))) == 0 else None
        self.chol = None if self.sd is not None else jnp.linalg.cholesky(0.5 * (sub + sub.T))
        self.sites = {s.name: s for s in space.sites}
        super().__init__(fn)

    def __enter__(self):
        self._done = {}  # name -> unconstrained flat value, in the order met
        return super().__enter__()

    def process_message(self, msg):
        if msg["type"] != "sample" or msg["name"] not in self.sites or msg["name"] not in self.names or msg["is_observed"]:
            return
        name = msg["name"]
        position = self.names.index(name)
        missing = [n for n in self.names[:position] if n not in self._done]
        if missing:
            raise ModelError(
                f"as_prior: site {name!r} came before {missing}: the new model must reach the named sites in the "
                f"fitted model's order ({list(self.names)})"
            )
        msg["fn"] = self._conditional(name, position)

    def postprocess_message(self, msg):
        if msg["type"] == "sample" and msg["name"] in self.names and not msg["is_observed"]:
            site = self.sites[msg["name"]]
            self._done[msg["name"]] = jnp.reshape(site.transform.inv(msg["value"]), (-1,))

    def _conditional(self, name: str, position: int):
        site = self.sites[name]
        block = self.blocks[position][1]
        before = slice(0, block.start)
        mean = self.mean[block]
        shape = tuple(site.unconstrained_shape)
        transforms = [] if shape == (site.size,) else [dist.transforms.ReshapeTransform(shape, (site.size,))]
        if self.sd is not None:
            base = dist.Normal(mean, jnp.asarray(self.sd[block])).to_event(1)
            return dist.TransformedDistribution(base, transforms + [site.transform])
        if block.start > 0:
            u_before = jnp.concatenate([self._done[n] for n in self.names[:position]])
            eps = jax.scipy.linalg.solve_triangular(self.chol[before, before], u_before - self.mean[before], lower=True)
            mean = mean + self.chol[block, before] @ eps
        base = dist.MultivariateNormal(mean, scale_tril=self.chol[block, block])
        return dist.TransformedDistribution(base, transforms + [site.transform])
