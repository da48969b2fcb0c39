"""The program interface the vocabulary calls: the model program and the guide programs, declared.

Objectives and estimators never see concrete classes. `provi.sim`, `provi.density` and the rest
of the vocabulary call only what `AbstractModel` and `AbstractGuide` declare here (equinox
style: every attribute a program has is an `AbstractVar`, every operation an abstract method),
so no code probes a program with `getattr` or `hasattr`. The concrete programs live one floor up,
in `provi.programs`: `ModelProgram`, `FamilyGuide` (a family over the unconstrained latent
vector) and `NumPyroGuide` (a user's guide function).

Programs are compared and hashed by identity: they are static arguments of compiled functions
and keys of the compile cache.
"""


import abc
from typing import Any, Callable

import equinox as eqx
import jax

from provi.core.model import ModelInfo
from provi.errors import ModelError

__all__ = ["AbstractProgram", "AbstractModel", "AbstractGuide", "require_sites"]


class AbstractProgram(eqx.Module):
    """What every program has: site shapes, subsampled plates, and (for NumPyro programs) a function."""

    shapes: eqx.AbstractVar[dict]  # site -> shape of the values `log_density` takes (constrained)
    plates: eqx.AbstractVar[dict]  # subsampled plates: name -> (size, subsample size)

    __hash__ = object.__hash__

    def __eq__(self, other):
        return self is other

    @abc.abstractmethod
    def replaying(self, indices: dict) -> "AbstractProgram":
        """This program with its subsampled plates given `indices` ({plate: index array})."""

    @abc.abstractmethod
    def numpyro_fn(self, params) -> tuple[Callable, dict] | None:
        """`(fn, values)`: the program's NumPyro function and its constrained `numpyro.param`
        values at `params`, for per-site work (traces, per-site densities); None for a program
        that is not a NumPyro function (a family over the whole latent vector)."""


class AbstractModel(AbstractProgram):
    """The model's log joint density, with its `numpyro.param` sites as learnable parameters."""

    info: eqx.AbstractVar[ModelInfo]

    @abc.abstractmethod
    def init_params(self) -> dict:
        """The unconstrained storage of the model's `numpyro.param` initial values."""

    @abc.abstractmethod
    def log_density(self, params, values: dict, args: tuple, kwargs: dict, keys) -> jax.Array:
        """log p(data, values), vectorised over leading particle axes of `values`."""


class AbstractGuide(AbstractProgram):
    """A guide program: draws of the model's latent sites and their log density.

    `sim` draws `n` particles and appends a `provi.core.bound.ScoreTerm` to `ledger` for each
    site whose estimator leaves a score term; `branching` is the estimators' branch state of one
    objective evaluation (opaque here; programs without estimator hooks ignore it).
    """

    sites: eqx.AbstractVar[tuple]  # every sample site the guide draws (auxiliary ones included)
    latents: eqx.AbstractVar[tuple]  # the model's latent sites it covers
    estimators: eqx.AbstractVar[dict]  # site -> the estimator of its gradient
    site_fns: eqx.AbstractVar[dict]  # site -> its distribution as traced at build time (sizes estimator state)
    is_point: eqx.AbstractVar[bool]  # a point mass (MAP): no density, no k-hat
    optimise: eqx.AbstractVar[bool]  # fitting runs optimisation steps (the Laplace family does not)
    has_density: eqx.AbstractVar[bool]  # log q is defined (particles have none: no k-hat, no ELBO)
    name: eqx.AbstractVar[str]  # for reports and `repr`

    @abc.abstractmethod
    def init_params(self, key, scale=None) -> dict:
        """Initial variational parameters."""

    @abc.abstractmethod
    def sim(self, params, consts, key, n: int, args: tuple, kwargs: dict, ledger: list, branching: Any = None):
        """`(values, log_q)`: `n` draws of every site (leading axis n) and log q of each, (n,)."""

    @abc.abstractmethod
    def log_density(self, params, consts, values: dict, args: tuple, kwargs: dict) -> jax.Array:
        """log q(values), vectorised over leading particle axes of `values`."""

    @abc.abstractmethod
    def positions(self, params, consts) -> tuple[jax.Array, jax.Array]:
        """`(x, metric)`: a particle guide's particles (N, D) in its flat coordinates, and the
        Euclidean metric of the model's unconstrained space in those coordinates (D, D); other
        guides raise `ObjectiveError`."""

    @abc.abstractmethod
    def components(self, params, consts) -> tuple[jax.Array, jax.Array]:
        """`(loc, log_scale)`, each (K, D): the mean-field Gaussian components of a
        `provi.guides.MeanFieldMixture` in its flat coordinates; other guides raise `ObjectiveError`."""

    @abc.abstractmethod
    def gaussian(self, params, consts) -> tuple[jax.Array, jax.Array]:
        """`(loc, scale)`: a Gaussian family's mean (D,) in its flat coordinates and its scale, the
        scales (D,) of a mean-field family or the Cholesky factor (D, D) of a full-rank one; other
        guides raise `ObjectiveError`."""

    @abc.abstractmethod
    def place(self, consts, x: jax.Array) -> tuple[dict, jax.Array]:
        """`(values, log_jacobian)`: the latent sites' constrained values at flat coordinates `x`
        (..., D) and log |det d values / d x| (...); guides without flat coordinates raise."""

    @abc.abstractmethod
    def local_moments(self, params, consts) -> dict:
        """`{site: (loc, scale)}`: the Gaussian marginals of the sites fitted with `LocalReparam`
        (`provi.core.local`), in each site's shape; empty for guides without such sites."""

    @abc.abstractmethod
    def spec(self) -> dict:
        """A JSON description from which `provi.programs.make_guide` rebuilds the guide (saved fits)."""


def require_sites(values: dict, expected: tuple[str, ...], what: str) -> None:
    """Raise a clear error when `values` lacks a site of `expected` or names an unknown one."""
    unknown = sorted(set(values) - set(expected))
    missing = [s for s in expected if s not in values]
    if unknown:
        raise ModelError(f"{what}: unknown site name(s) {unknown}; its sites are {list(expected)}")
    if missing:
        raise ModelError(f"{what}: no value given for site(s) {missing}")
