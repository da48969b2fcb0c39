"""`provi.fit`, the story of a fit: options -> setup -> start -> compiled loop -> result.

Each stage lives in its own module: the options are checked here and by `provi.engine.step`; the
setup (programs, data layout, update) is `provi.engine.step.setup`; the start is
`provi.engine.start`; the compiled loop is `provi.engine.runner` driven by
`provi.engine.driver`; the result is `provi.result.FitResult`. `guide="auto"` runs this story
once per stage of `provi.auto`.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import jax
import numpy as np
import optax

from provi import defaults
from provi.auto import fit_auto
from provi.core.objective import Objective
from provi.engine import checkpoint as ckpt_io
from provi.engine.compile import cached, enable_compilation_cache
from provi.engine.data import Feeder
from provi.engine.driver import drive
from provi.engine.parallel import data_lengths, make_mesh, place, replicate
from provi.engine.runner import FitState, Runner
from provi.engine.schedule import Plan
from provi.engine.start import family_state_shapes
from provi.engine.step import Setup, check_objective, seed_keys, setup
from provi.programs import FamilyGuide
from provi.result import FitResult, prepare_khat

__all__ = ["fit"]


def fit(
    model: Callable,
    *args,
    guide: Any = "auto",
    objective: Objective | None = None,
    optimizer: optax.GradientTransformation | None = None,
    steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
    early_stop: bool | str = "auto",
    init: str | dict = "map",
    estimators: dict | None = None,
    average: bool | str = "auto",
    devices: Any = None,
    batches: Any = None,
    checkpoint: str | None = None,
    checkpoint_every: int = defaults.CHECKPOINT_EVERY,
    resume: str | None = None,
    **model_kwargs,
) -> FitResult:
    """Fit `guide` to `model(*args, **model_kwargs)` by maximising `objective`.

    Args:
      guide: "auto" (default: see `provi.auto`), "delta", "meanfield", "fullrank", "lowrank", "laplace",
        "flow" (RealNVP), "iaf", "nsf", "planar", "radial", "mixture", a family from `provi.guides`,
        or a NumPyro guide function using `numpyro.param`.
      objective: an objective (default `provi.ELBO()`; "auto" fits its flow stage with the
        path-gradient ELBO), built in or made with `@provi.objective`.
      optimizer: an optax optimizer (default Adam(1e-2) for families, whose space is whitened at
        the start, and for NumPyro guides).
      steps: most optimisation steps (default 20,000, with early stopping).
      seed: a non-negative integer; the same seed gives the same result.
      progress: show a progress bar (updated between compiled chunks).
      early_stop: stop when the loss no longer improves; "auto" stops early only when `steps` is not given.
      init: "map" (start from the mode and its curvature; a site marked `infer={"init": "standard"}`
        starts at N(0, I) unless the model is Gaussian in it), "prior", "zero", "standard" (N(0, I)
        in the unconstrained space), or {site: value}.
      estimators: {guide site: estimator} overriding each site's default gradient estimator.
      average: return the average of the final iterates (Polyak averaging); "auto" does so for families.
        With early stopping, the average starts at the two windows in which the loss was found
        stationary and runs for at least 5,000 steps (within `steps`): the error of an averaged
        iterate shrinks as one over the square root of the steps averaged.
      devices: run data-parallel over devices: a count, a list of devices or a `jax.sharding.Mesh`
        (see `provi.engine.parallel`); the same seed gives the same fit as on one device.
      batches: a loader of minibatches streamed into the compiled loop (see `provi.engine.data`);
        the model is called as `model(*batch, *args, **model_kwargs)`.
      checkpoint: a file to save the fit's state to every `checkpoint_every` chunks of
        `provi.defaults.FIXED_CHUNK` steps, atomically (see `provi.engine.checkpoint`).
      resume: a checkpoint file to continue from; the result equals that of an uninterrupted fit.
    Returns:
      a `FitResult`. An interrupted fit (Ctrl-C) or one whose loss turns non-finite returns what it had.
    """
    _check_options(model, steps, guide, seed)
    enable_compilation_cache()
    # the staged pipeline (provi.auto); with estimators, streamed batches or checkpoints, "auto"
    # only picks the Gaussian family by dimension
    auto = isinstance(guide, str) and guide == "auto" and not estimators and batches is None and checkpoint is None and resume is None
    if not auto:
        objective = check_objective(objective, guide)
    elif objective is not None:
        check_objective(objective)
    mesh = make_mesh(devices)
    feeder, n_batch = None, 0
    if batches is not None:
        feeder = Feeder(batches, 0 if resume is None else int(ckpt_io.read_meta(resume)["step"]))
        first = feeder.first()
        n_batch, args = len(first), tuple(first) + tuple(args)
    one = functools.partial(
        _fit_one, model, args, dict(model_kwargs), seed=seed, progress=progress, early_stop=early_stop, init=init,
        estimators=estimators, average=average, mesh=mesh, feeder=feeder, n_batch=n_batch,
        checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
    )
    if auto:

        def fit_family(g, obj, opt, n, start, early=None, model=None):
            fit_one = one if model is None else functools.partial(_fit_one, model, *one.args[1:], **one.keywords)
            return fit_one(guide=g, objective=obj, optimizer=opt, steps=n, start=start, **({} if early is None else {"early_stop": early}))

        return fit_auto(fit_family, steps=steps, seed=seed, objective=objective, optimizer=optimizer)
    return one(guide=guide, objective=objective, optimizer=optimizer, steps=steps)


def _check_options(model, steps, guide, seed):
    if not callable(model):
        raise TypeError(f"provi.fit takes a NumPyro model function first, got {type(model).__name__}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps <= 0):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if guide is None:
        raise ValueError("guide must be a name (e.g. 'auto', 'meanfield'), a family, or a NumPyro guide")
    seed_keys(seed)  # a clear error for a bad seed


def _fit_one(model, args, kwargs, *, guide, objective, optimizer, steps, seed, progress, early_stop, init,
             estimators, average, mesh=None, feeder=None, n_batch=0, checkpoint=None,
             checkpoint_every=defaults.CHECKPOINT_EVERY, resume=None, start=None) -> FitResult:
    """One fit of one guide; `start=(program, params, consts[, model params])` starts a family there
    instead of at the mode."""
    t0 = time.perf_counter()
    k_init, k_loop = seed_keys(seed)
    alg = setup(model, *args, guide=guide if start is None else start[0], objective=objective, optimizer=optimizer,
                estimators=estimators, init=init, seed=seed, **kwargs)
    subsampled = mesh is not None or alg.model.info.subsampled
    lengths = data_lengths(model, alg.args, alg.kwargs, alg.guide, alg.model.info) if subsampled else set()
    data = place(alg.data, mesh, lengths)  # the start runs once, on one device
    user_steps = steps is not None
    steps = (steps if user_steps else defaults.STEPS) if alg.guide.optimise else 0
    early = (not user_steps) if early_stop == "auto" else bool(early_stop)
    averaging = isinstance(alg.guide, FamilyGuide) if average == "auto" else bool(average)
    guide_key = alg.guide.family if isinstance(alg.guide, FamilyGuide) else guide
    frozen = None if not estimators else tuple(sorted(estimators.items()))
    key = ("runner", n_batch, model, alg.layout, guide_key, alg.objective, alg.optimizer, averaging, frozen)
    runner = cached(key, lambda: Runner(alg.model, alg.guide, alg.objective, alg.layout, alg.optimizer, defaults.CHUNK_MAX, averaging, n_batch))
    ahead = steps and mesh is None and feeder is None and resume is None and start is None
    khat = isinstance(guide, str) and guide == "auto"  # auto's first stage: its k-hat draws follow the loop
    params, opt_state, consts, notes = _start(alg, runner, k_init, k_loop, start, data if ahead else None, khat)
    state = replicate(FitState(params, opt_state, k_loop, np.int32(0)), mesh)
    consts = replicate(consts, mesh)
    plan = Plan.make(feeder, mesh, lengths, data, n_batch, checkpoint, checkpoint_every, resume, seed, steps)
    restored = plan.restore(state, consts) if resume else None
    if restored is not None:
        state, consts = replicate(restored.state, mesh), replicate(restored.consts, mesh)
    state, losses, stop, final = drive(runner, state, consts, data, steps, early, progress, alg.objective, plan, restored)
    if averaging and final is not None:  # the iterate average of what results read; states as the last step left them
        state = state._replace(params={**state.params, "model": final["model"], "guide": final["guide"]})
    stop.notes = notes
    stop.seconds = time.perf_counter() - t0
    return FitResult(data=data, layout=alg.layout, model=alg.model, guide=alg.guide, params=state.params, consts=consts,
                     losses=losses, args=alg.args, kwargs=alg.kwargs, objective=alg.objective, stop=stop, seed=seed)


def _start(alg: Setup, runner: Runner, k_init, k_loop, start, ahead_data, khat=False):
    """`(params, opt_state, consts, notes)`: where the fit starts. With `ahead_data`, a family's
    loop is compiled on a worker thread while its start (mode search) runs, and with `khat` the
    programs of auto's first k-hat after it."""
    if start is not None:  # (program, guide params, consts[, the model's params to start from])
        guide_params, consts = start[1], start[2]
        params = {"model": start[3] if len(start) > 3 else alg.model.init_params(), "guide": guide_params}
        if alg.objective.keeps_state:
            params["objective"] = alg.carried_zeros(params, consts, k_init)
        return params, alg.optimizer.init(params), consts, []
    if ahead_data is not None and isinstance(alg.guide, FamilyGuide) and not alg.objective.keeps_state:
        shapes = family_state_shapes(alg.guide, alg.model.init_params(), alg.optimizer)
        step = jax.ShapeDtypeStruct((), np.int32)
        try:  # only a head start: the fit's own path raises any error, in its order
            runner.prepare(FitState(shapes[0], shapes[1], jax.ShapeDtypeStruct(k_loop.shape, k_loop.dtype), step), shapes[2], ahead_data)
            if khat:  # queued behind the loop on the compiler thread, which it never delays
                prepare_khat(alg.model, alg.guide, shapes[0], shapes[2], ahead_data, alg.layout)
        except Exception:
            pass
    state, notes = alg.start(k_init)
    return state.params, state.opt_state, state.consts, notes
