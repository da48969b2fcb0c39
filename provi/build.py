"""From `provi.fit`'s arguments to programs, starting parameters and preconditioners."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

import jax
import jax.numpy as jnp

from provi.core.laplace import converged, curvature, find_mode, newton_decrement
from provi.core.model import ModelInfo
from provi.core.space import LatentSpace
from provi.errors import ModelError
from provi.guides.families import Delta, Family, FullRank, Laplace, LowRank, MeanField
from provi.guides.flows import IAF, Flow, NeuralSplineFlow, Planar, Radial, RealNVP
from provi.guides.mixture import GaussianMixture
from provi.guides.program import FamilyGuide, ModelProgram, NumPyroGuide

__all__ = ["GUIDES", "family_for", "make_guide", "initialise_family", "log_density_u"]

DENSE_WHITENING = (FullRank, Laplace, Flow, GaussianMixture)  # flows start at the Laplace approximation
GUIDES = {
    "delta": Delta,
    "map": Delta,
    "meanfield": MeanField,
    "fullrank": FullRank,
    "lowrank": LowRank,
    "laplace": Laplace,
    "flow": RealNVP,
    "realnvp": RealNVP,
    "iaf": IAF,
    "nsf": NeuralSplineFlow,
    "planar": Planar,
    "radial": Radial,
    "mixture": GaussianMixture,
}
CURVATURE_MAX_DIM = 2000  # a full Hessian above this size costs too much memory and time


def family_for(guide, dim: int) -> Family:
    """The family a guide argument names; "auto" picks by dimension."""
    if isinstance(guide, Family):
        return guide
    if guide == "auto":
        return FullRank() if dim <= 200 else (LowRank(rank=10) if dim <= 5000 else MeanField())
    if isinstance(guide, str) and guide in GUIDES:
        return GUIDES[guide]()
    names = ", ".join(repr(k) for k in (*GUIDES, "auto"))
    raise ValueError(
        f"unknown guide {guide!r}: use one of {names}, a family from provi.guides, "
        "or a NumPyro guide function with numpyro.param sites"
    )


def make_guide(guide, info: ModelInfo, args, kwargs, key, estimators):
    """A guide program for the `guide` argument of `provi.fit`."""
    if callable(guide) and not isinstance(guide, Family):
        return NumPyroGuide.build(guide, info, args, kwargs, key, estimators)
    discrete = [s for s in info.latents if s.discrete]
    if discrete:
        s = discrete[0]
        raise ModelError(
            f"latent site {s.name!r} is discrete ({s.distribution}), which a continuous family cannot "
            "approximate. Marginalise it in the model (e.g. a mixture distribution), or write a NumPyro "
            "guide with a discrete sample statement for it and choose its gradient estimator with "
            "infer={'estimator': provi.estimators.Enumerate()} (or Reinforce(), MVD(), ...)"
        )
    if estimators:
        unknown = sorted(set(estimators) - set(info.latent_names))
        if unknown:
            raise ModelError(f"estimators given for unknown site(s) {unknown}; latent sites are {list(info.latent_names)}")
    space = LatentSpace.of(info.latents)
    return FamilyGuide(space, family_for(guide, space.dim))


def log_density_u(model: ModelProgram, space: LatentSpace, layout, jacobian: bool = True) -> Callable:
    """f(u, model_params, data): log p(T(u), data) (+ log|det J| when `jacobian`) at the flat vector u."""
    from provi.core.vocab import KeyStream
    from provi.loop import join_data

    def f(u, model_params, data):
        args, kwargs = join_data(data, layout)
        z, ldj = space.constrain(u)
        lp = model.log_density(model_params, z, args, kwargs, KeyStream(jax.random.PRNGKey(0)))
        return lp + ldj if jacobian else lp

    return f


def whitening(h: np.ndarray, tril: bool) -> tuple[np.ndarray, float]:
    """P with P P^T = H^-1 (lower triangular when `tril`, else diagonal), computed in float64 on
    the host after Jacobi scaling, with non-positive curvature lifted; and the smallest
    eigenvalue of the scaled H (<= 0: not a strict maximum).

    Scaling first matters: posteriors like a regression on an uncentred predictor have Hessians
    whose eigenvalues span fourteen orders of magnitude, but only five after scaling.
    """
    h = np.asarray(h, np.float64)
    h = 0.5 * (h + h.T)
    dg = np.abs(np.diag(h))
    dg = np.where(dg > 0, dg, 1.0)
    s = 1.0 / np.sqrt(dg)
    w, v = np.linalg.eigh(h * s[:, None] * s[None, :])
    lifted = np.maximum(np.abs(w), 1e-10 * max(np.max(np.abs(w)), 1e-30))
    if not tril:
        return s * np.sqrt(1.0 / np.diag((v * lifted) @ v.T)), float(np.min(w))
    cov = s[:, None] * ((v / lifted) @ v.T) * s[None, :]
    return np.linalg.cholesky(0.5 * (cov + cov.T)), float(np.min(w))


def run_once(fn):
    """jit for a program that runs once per fit: compiled without LLVM's expensive optimisations,
    which halves its compile time and costs nothing that matters at run time."""
    compiled = {}

    def call(*args):
        sig = jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), args)
        key = str(sig)
        if key not in compiled:
            lowered = jax.jit(fn).lower(*args)
            compiled[key] = lowered.compile(
                compiler_options={"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
            )
        return compiled[key](*args)

    return call


def _start_program(program: FamilyGuide, model: ModelProgram, layout, init: str, optimizer):
    """A compiled `(key, model_params, data, u_given) -> (params, opt_state, u, h, report)`: the
    family's starting point, the curvature there and the family's parameters, in one program (cached)."""
    from provi.loop import cached, join_data

    space, family = program.space, program.family
    d = space.dim
    tril = isinstance(family, DENSE_WHITENING)
    with_h = init == "map" and d <= CURVATURE_MAX_DIM and not family.is_point

    def build():
        f = log_density_u(model, space, layout, jacobian=not family.is_point)

        def run(key, model_params, data, u_given):
            args, kwargs = join_data(data, layout)
            k_prior, k_fam = jax.random.split(key)
            g = lambda u: f(u, model_params, data)
            report = {}
            if init == "given":
                u0 = u_given
            elif init in ("zero", "map"):
                u0 = jnp.zeros((d,))
            else:
                u0 = space.prior_point(model.model, k_prior, args, kwargs)
            u, h = u0, jnp.zeros((0, 0))
            scale = jnp.full((d,), 1.0 if family.is_point else 0.1)
            if init == "map":
                mode = find_mode(g, u0)
                finite = jnp.isfinite(mode.log_density) & jnp.all(jnp.isfinite(mode.u))
                ok = finite & converged(mode)
                if with_h:
                    # a stationary point in posterior-sd units: the Newton decrement is small (a raw
                    # gradient can stay large where float32 cannot resolve a strongly correlated optimum)
                    h = mode.curvature if mode.curvature is not None else curvature(g, mode.u)
                    decrement = newton_decrement(h, jax.grad(g)(mode.u))
                    ok = finite & (ok | (decrement < 1e-2))
                    h_ok = jnp.all(jnp.isfinite(h)) & ok
                    report.update(h_ok=h_ok, decrement=decrement)
                    scale = jnp.where(h_ok, 1.0, 0.1) * jnp.ones((d,))
                u = jnp.where(ok, mode.u, u0)
                report.update(mode_ok=ok, log_density=mode.log_density, grad_norm=mode.grad_norm, iterations=mode.iterations)
            params = program.init_params(k_fam, scale)
            return params, optimizer.init({"model": model_params, "guide": params}), u, h, report

        return run_once(run)

    return cached(("start", model.model, layout, family, init, optimizer), build), with_h


def initialise_family(program: FamilyGuide, model: ModelProgram, model_params, data, layout, key, init, optimizer):
    """Starting parameters, preconditioner and optimiser state for a family: `(params, consts, opt_state, notes)`.

    With `init="map"` (default), the mode of the unconstrained log density is found (Newton's
    method, or L-BFGS in high dimension) and the curvature there whitens the space `u = mode + P v`:
    the family starts at the Laplace approximation, with its parameters near (0, I), which makes
    ill-conditioned posteriors (flat priors, tight likelihoods) as easy as well-conditioned ones.
    `init="prior"` starts at a prior draw with scales 0.1, `"zero"` at zero; `{site: value}` there.
    """
    space = program.space
    u_given = jnp.zeros((space.dim,))
    kind = init
    if isinstance(init, dict):
        unknown = sorted(set(init) - set(space.names))
        if unknown:
            raise ModelError(f"init values given for unknown site(s) {unknown}; latent sites are {list(space.names)}")
        missing = sorted(set(space.names) - set(init))
        if missing:
            raise ModelError(f"init: give a value for every latent site; missing {missing}")
        u_given, kind = space.unconstrain({k: jnp.asarray(v, dtype=jnp.result_type(float)) for k, v in init.items()}), "given"
    elif init not in ("map", "prior", "zero"):
        raise ValueError(f"unknown init {init!r}: use 'map', 'prior', 'zero' or a dict of site values")
    run, with_h = _start_program(program, model, layout, kind, optimizer)
    params, opt_state, u, h, report = jax.device_get(run(key, model_params, data, u_given))
    tril = isinstance(program.family, DENSE_WHITENING)
    d = space.dim
    P = np.eye(d) if tril else np.ones((d,))
    if with_h and report["h_ok"]:
        P, report["min_eig"] = whitening(h, tril)
    return params, program.consts(u, P), opt_state, _notes(report, with_h, d)


def _notes(r: dict, with_h: bool, d: int) -> list[str]:
    notes = []
    if not r:
        return notes
    if not r["mode_ok"]:
        notes.append(
            f"init: the mode search found no mode (gradient {float(r['grad_norm']):.3g} after {int(r['iterations'])} "
            "iterations; the density may be unbounded, as in a funnel): the fit starts at zero in the "
            "unconstrained space, with no preconditioning"
        )
    elif with_h:
        if not r["h_ok"]:
            notes.append("init: the curvature at the mode is not finite; no preconditioning")
        elif float(r.get("min_eig", 1.0)) <= 0:
            notes.append("init: the curvature at the mode is not positive definite (not a strict maximum); it was lifted")
    elif d > CURVATURE_MAX_DIM:
        notes.append(f"init: no curvature preconditioning above {CURVATURE_MAX_DIM} dimensions")
    return notes
