"""From `provi.fit`'s arguments to programs, starting parameters and preconditioners."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

import jax
import jax.numpy as jnp

from provi.core.laplace import NEWTON_MAX_DIM, converged, curvature, lbfgs_mode, newton_decrement, newton_mode, value_grad_curvature
from provi.core.model import ModelInfo
from provi.core.space import LatentSpace
from provi.errors import ModelError
from provi.guides.families import Delta, Family, FullRank, Laplace, LowRank, MeanField
from provi.guides.flows import IAF, Flow, NeuralSplineFlow, Planar, Radial, RealNVP
from provi.guides.mixture import GaussianMixture
from provi.guides.program import FamilyGuide, ModelProgram, NumPyroGuide

__all__ = ["GUIDES", "family_for", "make_guide", "family_shapes", "initialise_family", "log_density_u"]

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
        from provi.loop import signature

        key = signature(args)
        if key not in compiled:
            lowered = jax.jit(fn).lower(*args)
            compiled[key] = lowered.compile(
                compiler_options={"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
            )
        return compiled[key](*args)

    return call


def _start_program(program: FamilyGuide, model: ModelProgram, layout, init: str, optimizer) -> tuple[Callable, bool]:
    """`(start, with_h)`: `start(key, model_params, data, u_given) -> (params, opt_state, u, h, report)`
    gives the family's starting point, the curvature there (with `with_h`) and the family's
    parameters, as host arrays. Its compiled parts are cached.

    The mode of a density of up to `NEWTON_MAX_DIM` dimensions is found by Newton's method driven
    from the host (`provi.core.laplace.newton_mode`), which compiles only the density's value,
    gradient and Hessian; in higher dimension one compiled program runs L-BFGS (and the curvature).
    """
    from provi.loop import cached

    space, family = program.space, program.family
    d, dtype = space.dim, jnp.result_type(float)
    with_h = init == "map" and d <= CURVATURE_MAX_DIM and not family.is_point
    key = (model.model, layout, family, init, optimizer)
    make = cached(("family init",) + key, lambda: _family_init_program(program, optimizer))
    if init == "map" and d <= NEWTON_MAX_DIM:
        vgh = cached(("vgh", model.model, layout, family.is_point), lambda: _vgh_program(model, space, layout, family.is_point))
        search = lambda mp, data: newton_mode(lambda u: vgh(np.asarray(u, dtype), mp, data), np.zeros((d,)))
    elif init == "map":
        lbfgs = cached(("lbfgs",) + key, lambda: _lbfgs_program(model, space, layout, family.is_point, with_h))
        search = lambda mp, data: jax.device_get(lbfgs(mp, data))
    else:
        point = cached(("start point",) + key, lambda: _point_program(program, model, layout, init))

    def start(key, model_params, data, u_given):
        h, scale, report = np.zeros((0, 0)), np.full((d,), 1.0 if family.is_point else 0.1), {}
        if init == "map":
            mode = search(model_params, data)
            log_density = float(mode.log_density)
            finite = bool(np.isfinite(log_density) and np.all(np.isfinite(mode.u)))
            ok = finite and converged(mode)
            if with_h:
                # a stationary point in posterior-sd units: the Newton decrement is small (a raw
                # gradient can stay large where float32 cannot resolve a strongly correlated optimum)
                h = np.asarray(mode.curvature)
                decrement = newton_decrement(h, mode.gradient)
                ok = finite and (ok or decrement < 1e-2)
                h_ok = ok and bool(np.all(np.isfinite(h)))
                report.update(h_ok=h_ok, decrement=decrement)
                scale = np.full((d,), 1.0 if h_ok else 0.1)
            u = np.asarray(mode.u) if ok else np.zeros((d,))
            report.update(mode_ok=ok, log_density=log_density, grad_norm=mode.grad_norm, iterations=mode.iterations)
        else:
            u = point(key, model_params, data, np.asarray(u_given, dtype))
        params, opt_state = make(key, np.asarray(scale, dtype), model_params)
        return params, opt_state, np.asarray(u, dtype), h, report

    return start, with_h


def _vgh_program(model, space, layout, is_point):
    """Compiled `(u, model_params, data) -> (log density, gradient, negative Hessian)` at `u`."""
    f = log_density_u(model, space, layout, jacobian=not is_point)
    return run_once(lambda u, model_params, data: value_grad_curvature(lambda x: f(x, model_params, data), u))


def _lbfgs_program(model, space, layout, is_point, with_h):
    """Compiled `(model_params, data) -> Mode`: L-BFGS from zero, with the curvature at its end."""
    f = log_density_u(model, space, layout, jacobian=not is_point)

    def run(model_params, data):
        g = lambda u: f(u, model_params, data)
        mode = lbfgs_mode(g, jnp.zeros((space.dim,)))
        return mode._replace(curvature=curvature(g, mode.u)) if with_h else mode

    return run_once(run)


def _point_program(program, model, layout, init):
    """Compiled `(key, model_params, data, u_given) -> u`: the given point, zero, or a prior draw."""
    from provi.loop import join_data

    space = program.space

    def run(key, model_params, data, u_given):
        if init == "given":
            return u_given
        if init == "zero":
            return jnp.zeros((space.dim,))
        args, kwargs = join_data(data, layout)
        return space.prior_point(model.model, jax.random.split(key)[0], args, kwargs)

    return run_once(run)


def _family_init_program(program: FamilyGuide, optimizer):
    """Compiled `(key, scale, model_params) -> (family parameters, optimiser state)`."""

    def make(key, scale, model_params):
        params = program.init_params(jax.random.split(key)[1], scale)
        return params, optimizer.init({"model": model_params, "guide": params})

    return run_once(make)


def family_shapes(program: FamilyGuide, model_params, optimizer, key):
    """The loop's state and constants for `program` as `jax.ShapeDtypeStruct`s, before its start is
    computed (what `Runner.prepare` compiles the loop for): `(state, consts)`."""
    from provi.loop import FitState

    d = program.space.dim
    consts = jax.eval_shape(lambda: program.consts(np.zeros((d,)), _identity_whitening(program)))
    guide = jax.eval_shape(program.init_params, jax.ShapeDtypeStruct((2,), jnp.uint32), jax.ShapeDtypeStruct((d,), jnp.result_type(float)))
    params = {"model": model_params, "guide": guide}
    shapes = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), tree)
    state = FitState(shapes(params), shapes(jax.eval_shape(optimizer.init, params)), shapes(key), jax.ShapeDtypeStruct((), jnp.int32))
    return state, shapes(consts)


def initialise_family(program: FamilyGuide, model: ModelProgram, model_params, data, layout, key, init, optimizer):
    """Starting parameters, preconditioner and optimiser state for a family: `(params, consts, opt_state, notes)`.

    With `init="map"` (default), the mode of the unconstrained log density is found (Newton's
    method, or L-BFGS in high dimension) and the curvature there whitens the space `u = mode + P v`:
    the family starts at the Laplace approximation, with its parameters near (0, I), which makes
    ill-conditioned posteriors (flat priors, tight likelihoods) as easy as well-conditioned ones.
    `init="prior"` starts at a prior draw with scales 0.1, `"zero"` at zero; `{site: value}` there.
    """
    space = program.space
    u_given = np.zeros((space.dim,))
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
    P = _identity_whitening(program)
    if with_h and report["h_ok"]:
        P, report["min_eig"] = whitening(h, tril=P.ndim == 2)
    return params, program.consts(u, P), opt_state, _notes(report, with_h, space.dim)


def _identity_whitening(program: FamilyGuide) -> np.ndarray:
    """The preconditioner P = I in the family's form: a matrix for dense whitening, else a vector."""
    d = program.space.dim
    return np.eye(d) if isinstance(program.family, DENSE_WHITENING) else np.ones((d,))


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
