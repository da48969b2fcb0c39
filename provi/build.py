"""From `provi.fit`'s arguments to programs, starting parameters and preconditioners."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from provi.core.laplace import curvature, find_mode
from provi.core.model import ModelInfo
from provi.core.space import LatentSpace
from provi.errors import ModelError
from provi.guides.families import Delta, Family, FullRank, Laplace, LowRank, MeanField
from provi.guides.flows import IAF, Flow, NeuralSplineFlow, Planar, Radial, RealNVP
from provi.guides.mixture import GaussianMixture
from provi.guides.program import FamilyGuide, ModelProgram, NumPyroGuide

__all__ = ["GUIDES", "family_for", "make_guide", "initialise_family", "log_density_u"]

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


def _whitening(h, tril: bool):
    """P with P P^T ~ H^-1 (lower triangular when `tril`, else the diagonal 1/sqrt(H_ii)), after
    lifting non-positive curvature; and H's smallest eigenvalue."""
    # Jacobi scaling first: eigh in float32 resolves eigenvalues only relative to the largest, and
    # a posterior with very different scales (an uncentered regression) would lose its small ones.
    dg = jnp.diag(h)
    s = 1.0 / jnp.sqrt(jnp.where(dg > 0, dg, jnp.maximum(jnp.max(jnp.abs(dg)), 1e-8)))
    w, v = jnp.linalg.eigh(s[:, None] * h * s[None, :])
    floor = jnp.maximum(1e-6 * jnp.max(jnp.abs(w)), 1e-8)
    if tril:
        lifted = jnp.maximum(jnp.abs(w), floor)
        cov = (v / lifted) @ v.T
        P = s[:, None] * jnp.linalg.cholesky(0.5 * (cov + cov.T))
    else:
        dg = jnp.diag(h)
        P = 1.0 / jnp.sqrt(jnp.where(dg > 0, dg, jnp.maximum(jnp.abs(dg), floor)))
    return P, jnp.min(w)


def _start_program(program: FamilyGuide, model: ModelProgram, layout, init: str, optimizer):
    """A compiled `(key, model_params, data, u_given) -> (params, consts, opt_state, report)`:
    the family's starting point and preconditioner, in one program (cached)."""
    from provi.loop import cached, join_data

    space, family = program.space, program.family
    d = space.dim
    tril = isinstance(family, (FullRank, Laplace, Flow, GaussianMixture))  # dense whitening; flows start at Laplace
    with_h = init == "map" and d <= CURVATURE_MAX_DIM and not family.is_point

    def build():
        f = log_density_u(model, space, layout, jacobian=not family.is_point)

        @jax.jit
        def run(key, model_params, data, u_given):
            args, kwargs = join_data(data, layout)
            k_prior, k_fam = jax.random.split(key)
            g = lambda u: f(u, model_params, data)
            ident = jnp.eye(d) if tril else jnp.ones((d,))
            report = {}
            if init == "given":
                u0 = u_given
            elif init == "zero":
                u0 = jnp.zeros((d,))
            else:
                zero, prior = jnp.zeros((d,)), space.prior_point(model.model, k_prior, args, kwargs)
                u0 = zero if init == "map" else prior
                if init == "map":
                    u0 = jnp.where(jnp.isfinite(g(zero)), zero, prior)
            if init != "map":
                scale = jnp.full((d,), 1.0 if family.is_point else 0.1)
                params = program.init_params(k_fam, scale)
                consts = program.consts(u0, ident)
            else:
                mode = find_mode(g, u0)
                ok = jnp.isfinite(mode.log_density) & jnp.all(jnp.isfinite(mode.u))
                # no mode (a funnel's density grows without bound): start from u0, unwhitened
                ok = ok & (mode.grad_norm <= 1e-2 * (1.0 + jnp.abs(mode.log_density)))
                u = jnp.where(ok, mode.u, u0)
                report.update(mode_ok=ok, log_density=mode.log_density, grad_norm=mode.grad_norm, iterations=mode.iterations)
                if with_h:
                    h = mode.curvature if mode.curvature is not None else curvature(g, u)
                    h_ok = jnp.all(jnp.isfinite(h)) & ok
                    P, min_eig = _whitening(jnp.where(h_ok, h, jnp.eye(d)), tril)
                    P = jnp.where(h_ok, P, ident)
                    report.update(h_ok=h_ok, min_eig=min_eig)
                    scale = jnp.where(h_ok, 1.0, 0.1) * jnp.ones((d,))
                else:
                    P, scale = ident, jnp.full((d,), 1.0 if family.is_point else 0.1)
                params = program.init_params(k_fam, scale)
                consts = program.consts(u, P)
            full = {"model": model_params, "guide": params}
            return params, consts, optimizer.init(full), report

        return run

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
    params, consts, opt_state, report = run(key, model_params, data, u_given)
    return params, consts, opt_state, _notes(jax.device_get(report), with_h, space.dim)


def _notes(r: dict, with_h: bool, d: int) -> list[str]:
    notes = []
    if not r:
        return notes
    if not r["mode_ok"]:
        notes.append(
            "init: the mode search found no mode (non-finite values, or a density that grows without "
            "bound, e.g. a funnel); the fit starts from the initial point without preconditioning"
        )
    elif float(r["grad_norm"]) > 1e-2 * (1 + abs(float(r["log_density"]))):
        notes.append(
            f"init: the mode search stopped with gradient {float(r['grad_norm']):.3g} after {int(r['iterations'])} "
            "iterations: the density may have no mode (e.g. a funnel); the start is not a Laplace approximation"
        )
    if with_h:
        if not r["mode_ok"]:
            pass
        elif not r["h_ok"]:
            notes.append("init: the curvature at the mode is not finite; no preconditioning")
        elif float(r["min_eig"]) <= 0:
            notes.append("init: the curvature at the mode is not positive definite (not a strict maximum); it was lifted")
    elif d > CURVATURE_MAX_DIM:
        notes.append(f"init: no curvature preconditioning above {CURVATURE_MAX_DIM} dimensions")
    return notes
