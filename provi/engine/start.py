"""Where a family starts: the mode and its curvature (the Laplace start), or a given point.

With `init="map"` (the default), the mode of the unconstrained log density is found (Newton's
method driven from the host, or L-BFGS in high dimension: `provi.core.mode`) and the curvature
there whitens the space `u = mode + P v`: the family starts at the Laplace approximation, with its
parameters near (0, I), which makes ill-conditioned posteriors (flat priors, tight likelihoods) as
easy as well-conditioned ones. `init="prior"` starts at a prior draw with scales
`provi.defaults.START_SCALE`, `"zero"` at zero, `{site: value}` there, and `"standard"` is the
standard normal N(0, I) of the unconstrained space itself (location 0, every scale 1): the prior of
a whitened site such as a sparse GP's inducing values, where it lets hyperparameters fitted
alongside move from the first step. Those starts are pure functions of the key (`point_start`), so
`provi.setup(...).init` can be jitted and vmapped.

A latent site may carry its own start, `infer={"init": "standard"}`: the Laplace start then puts
the family's marginal for that site at N(0, I), uncorrelated with the other sites, which start at
the mode as usual (found jointly, then the site's block of the curvature replaced by the
identity). Where the density is Gaussian in the marked sites given the others (a conjugate
likelihood: its gradient is linear in them between the mode and zero), the mode and curvature are
their exact conditional posterior, and the start keeps them. `provi.gp`'s inducing values are
marked: q(u) starts at the whitened prior under a non-Gaussian likelihood and at the exact
conditional posterior under a Gaussian one. Any `init` but "map" overrides the marks.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from provi.core.bound import KeyStream
from provi.core.mode import converged, curvature, lbfgs_mode, newton_decrement, newton_mode, value_grad_curvature, whitening
from provi.core.space import LatentSpace
from provi.defaults import CURVATURE_MAX_DIM, NEWTON_MAX_DIM, START_SCALE
from provi.engine.compile import cached, run_once
from provi.engine.layout import join_data
from provi.errors import ModelError
from provi.programs import FamilyGuide, ModelProgram

__all__ = ["log_density_u", "init_kind", "point_start", "initialise_family", "family_state_shapes", "mode_search", "standard_coordinates"]


def log_density_u(model: ModelProgram, space: LatentSpace, layout, jacobian: bool = True) -> Callable:
    """f(u, model_params, data): log p(T(u), data) (+ log|det J| when `jacobian`) at the flat vector u."""

    def f(u, model_params, data):
        args, kwargs = join_data(data, layout)
        z, ldj = space.constrain(u)
        lp = model.log_density(model_params, z, args, kwargs, KeyStream(jax.random.PRNGKey(0)))
        return lp + ldj if jacobian else lp

    return f


def init_kind(init, space: LatentSpace) -> tuple[str, np.ndarray]:
    """`(kind, u_given)`: "map", "prior", "zero", "standard" or "given" (with the given point, unconstrained)."""
    if isinstance(init, dict):
        unknown = sorted(set(init) - set(space.names))
        if unknown:
            raise ModelError(f"init values given for unknown site(s) {unknown}; latent sites are {list(space.names)}")
        missing = sorted(set(space.names) - set(init))
        if missing:
            raise ModelError(f"init: give a value for every latent site; missing {missing}")
        return "given", np.asarray(space.unconstrain({k: jnp.asarray(v, dtype=jnp.result_type(float)) for k, v in init.items()}))
    if init not in ("map", "prior", "zero", "standard"):
        raise ValueError(f"unknown init {init!r}: use 'map', 'prior', 'zero', 'standard' or a dict of site values")
    return init, np.zeros((space.dim,))


def point_start(program: FamilyGuide, model: ModelProgram, layout, kind: str, optimizer) -> Callable:
    """`start(key, model_params, data, u_given) -> (params, opt_state, consts)` for the starts that
    need no mode search ("prior", "zero", "standard", "given"): pure, jit- and vmap-safe."""
    space = program.space
    scale = 1.0 if program.is_point or kind == "standard" else START_SCALE

    def start(key, model_params, data, u_given):
        k_point, k_family = jax.random.split(key)
        if kind == "given":
            u = jnp.asarray(u_given)
        elif kind in ("zero", "standard"):
            u = jnp.zeros((space.dim,))
        else:
            args, kwargs = join_data(data, layout)
            u = space.prior_point(model.model, k_point, args, kwargs)
        params = program.init_params(k_family, jnp.full((space.dim,), scale))
        opt_state = optimizer.init({"model": model_params, "guide": params})
        return params, opt_state, program.identity_consts(u)

    return start


def _mode_start(program: FamilyGuide, model: ModelProgram, layout, optimizer) -> tuple[Callable, bool]:
    """`(start, with_h)`: `start(key, model_params, data) -> (params, opt_state, u, h, report)`, the
    mode, the curvature there (with `with_h`) and the family's parameters, as host arrays. Its
    compiled parts are cached.

    Up to `NEWTON_MAX_DIM` dimensions the mode is found by Newton's method driven from the host
    (`provi.core.mode.newton_mode`), which compiles only the density's value, gradient and
    Hessian; in higher dimension one compiled program runs L-BFGS (and the curvature).
    """
    space, family = program.space, program.family
    d, dtype = space.dim, jnp.result_type(float)
    with_h = d <= CURVATURE_MAX_DIM and not family.is_point
    own = standard_coordinates(space)
    key = (model.model, layout, family, optimizer)
    make = cached(("family init",) + key, lambda: _family_init_program(program, optimizer))
    f = log_density_u(model, space, layout, jacobian=not family.is_point)
    if d <= NEWTON_MAX_DIM:
        vgh = cached(("vgh", model.model, layout, family.is_point), lambda: _vgh_program(f))
        search = lambda mp, data: newton_mode(lambda u: vgh(np.asarray(u, dtype), mp, data), np.zeros((d,)))  # noqa: E731
        gradient = lambda u, mp, data: vgh(np.asarray(u, dtype), mp, data)[1]  # noqa: E731
    else:
        lbfgs = cached(("lbfgs",) + key, lambda: _lbfgs_program(f, d, with_h))
        search = lambda mp, data: jax.device_get(lbfgs(mp, data))  # noqa: E731
        gradient = lambda u, mp, data: cached(("grad", model.model, layout, family.is_point), lambda: run_once(jax.grad(f)))(  # noqa: E731
            np.asarray(u, dtype), mp, data)

    def start(key, model_params, data):
        mode = search(model_params, data)
        log_density = float(mode.log_density)
        finite = bool(np.isfinite(log_density) and np.all(np.isfinite(mode.u)))
        ok = finite and converged(mode)
        h, scale, report = np.zeros((0, 0)), np.full((d,), 1.0 if family.is_point else START_SCALE), {}
        if with_h:
            # a stationary point in posterior-sd units: the Newton decrement is small (a raw
            # gradient can stay large where float32 cannot resolve a strongly correlated optimum)
            h = np.asarray(mode.curvature)
            decrement = newton_decrement(h, mode.gradient)
            ok = finite and (ok or decrement < 1e-2)
            h_ok = ok and bool(np.all(np.isfinite(h)))
            report.update(h_ok=h_ok, decrement=decrement)
            scale = np.full((d,), 1.0 if h_ok else START_SCALE)
        u = np.asarray(mode.u) if ok else np.zeros((d,))
        if own.any() and not (ok and _gaussian_in(own, u, lambda x: gradient(x, model_params, data))):
            # sites with their own start: N(0, I), uncorrelated with the rest
            u, scale = np.where(own, 0.0, u), np.where(own, 1.0, scale)
            h = np.where(own[:, None] | own[None, :], np.diag(own.astype(h.dtype)), h) if h.size else h
        report.update(mode_ok=ok, log_density=log_density, grad_norm=mode.grad_norm, iterations=mode.iterations)
        params, opt_state = make(key, np.asarray(scale, dtype), model_params)
        return params, opt_state, np.asarray(u, dtype), h, report

    return start, with_h


def _gaussian_in(own: np.ndarray, u: np.ndarray, gradient: Callable, rtol: float = 1e-3) -> bool:
    """Whether the log density is Gaussian in the coordinates `own` given the others at `u` (a
    conjugate likelihood): its gradient there is linear on the segment from `u` to zero in them
    (second difference of three gradients within `rtol` of their spread, float32's noise)."""
    target = np.where(own, 0.0, u)
    g0, g1, g2 = (np.asarray(gradient(u + t * (target - u)), np.float64)[own] for t in (0.0, 0.5, 1.0))
    spread = float(np.max(np.abs(g2 - g0)))
    return bool(np.all(np.isfinite([g0, g1, g2])) and np.max(np.abs(g2 - 2 * g1 + g0)) <= rtol * spread)


def standard_coordinates(space: LatentSpace) -> np.ndarray:
    """A boolean mask (D,) of the coordinates of the sites marked `infer={"init": "standard"}`."""
    return np.concatenate([np.full((s.size,), s.start == "standard") for s in space.sites] or [np.zeros((0,), bool)])


def mode_search(model: ModelProgram, space: LatentSpace, layout, model_params, data, starts: np.ndarray, max_iter: int = 200,
                tol: float = 1e-5) -> list:
    """Newton searches for modes of the unconstrained log density (Jacobian included) from each
    row of `starts` (S, D), each `provi.core.mode.Mode` ending with the curvature there (host
    arrays): several starts find the modes of a multimodal posterior (`provi.auto`). The compiled
    derivatives are those of the Laplace start, so a fit that started there compiles nothing;
    each search stops after `max_iter` Newton steps, or where the gradient is below `tol` times
    1 + |log density|."""
    f = log_density_u(model, space, layout, jacobian=True)
    vgh = cached(("vgh", model.model, layout, False), lambda: _vgh_program(f))
    dtype = jnp.result_type(float)
    return [newton_mode(lambda u: vgh(np.asarray(u, dtype), model_params, data), np.asarray(u0), max_iter, tol) for u0 in np.asarray(starts)]


def _vgh_program(f):
    """Compiled `(u, model_params, data) -> (log density, gradient, negative Hessian)` at `u`."""
    return run_once(lambda u, model_params, data: value_grad_curvature(lambda x: f(x, model_params, data), u))


def _lbfgs_program(f, d, with_h):
    """Compiled `(model_params, data) -> Mode`: L-BFGS from zero, with the curvature at its end."""

    def go(model_params, data):
        g = lambda u: f(u, model_params, data)  # noqa: E731
        mode = lbfgs_mode(g, jnp.zeros((d,)))
        return mode._replace(curvature=curvature(g, mode.u)) if with_h else mode

    return run_once(go)


def _family_init_program(program: FamilyGuide, optimizer):
    """Compiled `(key, scale, model_params) -> (family parameters, optimiser state)`."""

    def make(key, scale, model_params):
        params = program.init_params(jax.random.split(key)[1], scale)
        return params, optimizer.init({"model": model_params, "guide": params})

    return run_once(make)


def initialise_family(program: FamilyGuide, model: ModelProgram, model_params, data, layout, key, init, optimizer):
    """Starting parameters, preconditioner and optimiser state of a family, as host arrays:
    `(params, consts, opt_state, notes)`."""
    kind, u_given = init_kind(init, program.space)
    if kind != "map":
        start = cached(("point start", model.model, layout, program.family, kind, optimizer),
                       lambda: run_once(point_start(program, model, layout, kind, optimizer)))
        params, opt_state, consts = jax.device_get(start(key, model_params, data, np.asarray(u_given, jnp.result_type(float))))
        return params, consts, opt_state, []
    start, with_h = _mode_start(program, model, layout, optimizer)
    params, opt_state, u, h, report = jax.device_get(start(key, model_params, data))
    P = program.identity_whitening()
    if with_h and report["h_ok"]:
        P, report["min_eig"] = whitening(h, tril=P.ndim == 2)
    return params, program.consts(u, P), opt_state, _notes(report, with_h, program.space.dim)


def family_state_shapes(program: FamilyGuide, model_params, optimizer):
    """`(params, opt_state, consts)` of a family as `jax.ShapeDtypeStruct`s, before its start is
    computed (what the loop is compiled for while the start runs)."""
    d = program.space.dim
    consts = jax.eval_shape(lambda: program.consts(np.zeros((d,)), program.identity_whitening()))
    guide = jax.eval_shape(program.init_params, jax.ShapeDtypeStruct((2,), jnp.uint32), jax.ShapeDtypeStruct((d,), jnp.result_type(float)))
    params = {"model": model_params, "guide": guide}
    shapes = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), tree)  # noqa: E731
    return shapes(params), shapes(jax.eval_shape(optimizer.init, params)), shapes(consts)


def _notes(r: dict, with_h: bool, d: int) -> list[str]:
    notes = []
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
