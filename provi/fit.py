"""`provi.fit`: fit a variational approximation to a NumPyro model in one compiled, chunked loop."""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from provi.build import family_shapes, initialise_family, make_guide
from provi.cache import enable_compilation_cache
from provi.core.model import inspect_model
from provi.core.vocab import Objective
from provi.errors import NonFiniteError
from provi.estimators import init_states
from provi.guides.program import FamilyGuide, ModelProgram
from provi import checkpoint as ckpt_io
from provi.core.subsample import check_family_subsample, model_plates
from provi.data import Feeder
from provi.diagnostics import preload_arviz
from provi.loop import FitState, Runner, cached, split_data
from provi.parallel import make_mesh, place, replicate
from provi.objectives import ELBO
from provi.progress import Progress
from provi.result import FitResult, StopInfo
from provi.watch import Convergence, diagnose_nonfinite

__all__ = ["fit", "default_optimizer"]

DEFAULT_STEPS = 20_000
BUFFER = 10_000  # most steps in one compiled chunk
AVERAGE_MIN = 5_000  # after convergence, iterates are averaged over at least this many steps
FIXED_CHUNK = 500  # steps per chunk when checkpointing, resuming or streaming batches


@functools.lru_cache(maxsize=None)
def default_optimizer(learning_rate: float = 1e-2) -> optax.GradientTransformation:
    """Adam with the given learning rate; cached so that repeated fits reuse their compiled loop."""
    return optax.adam(learning_rate)


def _check_options(model, steps, guide):
    if not callable(model):
        raise TypeError(f"provi.fit takes a NumPyro model function first, got {type(model).__name__}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps <= 0):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if guide is None:
        raise ValueError("guide must be a name (e.g. 'auto', 'meanfield'), a family, or a NumPyro guide")


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
    checkpoint_every: int = 10,
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
      seed: integer seed; the same seed gives the same result.
      progress: show a progress bar (updated between compiled chunks).
      early_stop: stop when the loss no longer improves; "auto" stops early only when `steps` is not given.
      init: "map" (start from the mode and its curvature), "prior", "zero", or {site: value}.
      estimators: {guide site: estimator} overriding each site's default gradient estimator.
      average: return the average of the final iterates (Polyak averaging); "auto" does so for families.
        With early stopping, the average starts at the two windows in which the loss was found
        stationary and runs for at least 5,000 steps (within `steps`): the error of an averaged
        iterate shrinks as one over the square root of the steps averaged.
      devices: run data-parallel over devices: a count, a list of devices or a `jax.sharding.Mesh`
        (see `provi.parallel`); the same seed gives the same fit as on one device.
      batches: a loader of minibatches streamed into the compiled loop (see `provi.data`); the model
        is called as `model(*batch, *args, **model_kwargs)`.
      checkpoint: a file to save the fit's state to every `checkpoint_every` chunks of
        `FIXED_CHUNK` steps, atomically (see `provi.checkpoint`).
      resume: a checkpoint file to continue from; the result equals that of an uninterrupted fit.
    Returns:
      a `FitResult`. An interrupted fit (Ctrl-C) or one whose loss turns non-finite returns what it had.
    """
    _check_options(model, steps, guide)
    enable_compilation_cache()
    # the staged "auto" pipeline (provi.auto); with streamed batches or checkpoints, "auto" only
    # picks the Gaussian family by dimension
    auto = isinstance(guide, str) and guide == "auto" and not estimators and batches is None and checkpoint is None and resume is None
    objective = ELBO() if objective is None and not auto else objective
    if auto:
        preload_arviz()  # the PSIS check at the end needs ArviZ: import it while the fit compiles
    if not (auto and objective is None) and not isinstance(objective, Objective):
        raise TypeError(f"objective must be a provi objective (e.g. provi.ELBO()), got {objective!r}")
    kwargs = dict(model_kwargs)
    mesh = make_mesh(devices)
    feeder, n_batch = None, 0
    if batches is not None:
        feeder = Feeder(batches, _resume_step(resume))
        first = feeder.first()
        n_batch, args = len(first), tuple(first) + tuple(args)
    one = functools.partial(
        _fit_one, model, args, kwargs, seed=seed, progress=progress, early_stop=early_stop, init=init,
        estimators=estimators, average=average, mesh=mesh, feeder=feeder, n_batch=n_batch,
        checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
    )
    if auto:
        from provi.auto import fit_auto

        def fit_family(g, obj, opt, n, start, early=None):
            kw = {} if early is None else {"early_stop": early}
            return one(guide=g, objective=obj, optimizer=opt, steps=n, start=start, **kw)

        return fit_auto(fit_family, model, args, kwargs, steps=steps, seed=seed, progress=progress,
                        early_stop=early_stop, init=init, objective=objective, optimizer=optimizer, average=average)
    return one(guide=guide, objective=objective, optimizer=optimizer, steps=steps)


def _fit_one(model, args, kwargs, *, guide, objective, optimizer, steps, seed, progress, early_stop, init,
             estimators, average, mesh=None, feeder=None, n_batch=0, checkpoint=None, checkpoint_every=10,
             resume=None, start=None) -> FitResult:
    """One fit of one guide; `start=(program, params, consts)` starts a family there instead of at the mode."""
    t0 = time.perf_counter()
    k_init, k_loop = _keys(seed)
    info = inspect_model(model, args, kwargs)
    model_prog = ModelProgram(model, info)
    if start is None:
        guide_prog = make_guide(guide, info, args, kwargs, k_init, estimators)
    else:
        guide_prog = start[0]
    model_params = model_prog.init_params()
    notes: list[str] = []
    data, layout = split_data(args, kwargs)
    lengths = _data_lengths(model, args, kwargs, guide_prog, info) if (mesh is not None or info.subsampled) else set()
    local_data, data = data, place(data, mesh, lengths)  # the start runs once, on one device
    optimizer = default_optimizer() if optimizer is None else optimizer
    optimise = getattr(getattr(guide_prog, "family", None), "optimise", True)
    user_steps = steps is not None
    steps = (steps if user_steps else DEFAULT_STEPS) if optimise else 0
    early = (not user_steps) if early_stop == "auto" else bool(early_stop)
    averaging = isinstance(guide_prog, FamilyGuide) if average == "auto" else bool(average)
    cache_key = (model, layout, _guide_key(guide, guide_prog), objective, optimizer, averaging, _freeze(estimators))

    def build():
        return Runner(model_prog, guide_prog, objective, layout, optimizer, BUFFER, averaging, n_batch)

    runner = cached(("runner", n_batch) + cache_key, build)
    if start is not None:
        _, guide_params, consts = start
        params = {"model": model_params, "guide": guide_params}
        opt_state = optimizer.init(params)
    elif isinstance(guide_prog, FamilyGuide):
        if steps and mesh is None and feeder is None and resume is None:  # compiles while the start runs
            try:
                runner.prepare(*family_shapes(guide_prog, model_params, optimizer, k_loop), data)
            except Exception:  # only a head start: the fit's own path raises any error, in its order
                pass
        guide_params, consts, opt_state, notes = initialise_family(
            guide_prog, model_prog, model_params, local_data, layout, k_init, init, optimizer
        )
        params = {"model": model_params, "guide": guide_params}
    else:
        guide_params, consts = guide_prog.init_params(k_init), {}
        params = {"model": model_params, "guide": guide_params}
        if est_state := init_states(guide_prog):  # explicit estimator state (baselines)
            params["estimators"] = est_state
        opt_state = optimizer.init(params)
    state = FitState(params, opt_state, k_loop, np.int32(0))
    state, consts = replicate(state, mesh), replicate(consts, mesh)
    plan = _Plan.make(feeder, mesh, lengths, data, n_batch, checkpoint, checkpoint_every, resume, seed, steps)
    restored = plan.restore(state, consts) if resume else None
    if restored is not None:
        state, consts = replicate(restored.state, mesh), replicate(restored.consts, mesh)
    state, losses, stop, final = _loop(runner, state, consts, data, steps, early, progress, objective, plan, restored)
    if averaging and final is not None:
        state = state._replace(params=final)
    stop.notes = notes
    stop.seconds = time.perf_counter() - t0
    return FitResult(
        data=data,
        layout=layout,
        model=model_prog,
        guide=guide_prog,
        params=state.params,
        consts=consts,
        losses=losses,
        args=args,
        kwargs=kwargs,
        objective=objective,
        stop=stop,
        state=state,
        seed=seed,
    )


def _keys(seed: int):
    """Two independent raw threefry keys from an integer seed, made on the host (no compilation)."""
    ss = np.random.SeedSequence(int(seed)).generate_state(4)
    return np.asarray(ss[:2], np.uint32), np.asarray(ss[2:], np.uint32)


def _freeze(x):
    return None if not x else tuple(sorted(x.items()))


def _guide_key(guide, program):
    return program.family if isinstance(program, FamilyGuide) else guide


def _chunk_size(done: int, total: int, rate, boundary: int | None) -> int:
    """Steps for the next chunk: about a quarter second of work, at most `BUFFER`, and never
    across a multiple of `boundary` (where convergence is checked and averaging starts), so that
    the result does not depend on how fast the machine ran."""
    n = min(total - done, 100 if rate is None else int(max(100, 0.25 * rate)), BUFFER)
    if boundary:
        n = min(n, boundary - done % boundary)
    return max(1, n)


def _loop(runner: Runner, state: FitState, consts, data, steps: int, early: bool, progress: bool, objective, plan=None, restored=None):
    """Run chunks until `steps`, convergence, a non-finite loss or Ctrl-C: `(state, losses, stop, averaged)`.

    Convergence is checked, and averaging starts and stops, only at multiples of the window, so
    the same seed gives the same result whatever the chunk sizes were.
    """
    plan = _Plan() if plan is None else plan
    losses: list[np.ndarray] = []
    sums: list[tuple[int, Any, int]] = []  # (first step, sum of iterates, steps) per chunk
    watch = Convergence.for_steps(steps) if early else None
    block = watch.window if watch else max(1, steps - steps // 4)
    avg_from = None if watch else steps - steps // 4
    stop = StopInfo(reason="steps", steps=0)
    done, rate = 0, None
    if restored is not None:
        losses, sums, done = [np.asarray(restored.losses)], list(restored.sums), int(restored.state.step)
        if watch is not None:
            avg_from = restored.meta.get("avg_from")
            if restored.watch:
                watch = dataclasses.replace(watch, **restored.watch)
        if restored.meta.get("stopped") == "converged":
            stop = StopInfo(reason="converged", steps=done)
    bar = Progress(steps, enabled=progress)
    bar.update(done, losses[-1] if losses else np.zeros(0))
    n = 0 if restored is not None and restored.meta.get("ended") else plan.chunk(done, steps, rate, block)
    chunk_data = plan.chunk_data(data, n)
    try:
        while done < steps and n > 0:
            t = time.perf_counter()
            start = state
            new, chunk_losses, acc, ran, bad = runner.run(state, consts, chunk_data, n)
            if plan.feeder is not None:  # the next block is built on the host while the device works
                following = plan.chunk(done + n, steps, None, block)
                next_data = plan.chunk_data(data, following)
            ran, bad = int(ran), int(bad)
            chunk = np.asarray(chunk_losses)[:ran]
            if bad >= 0:
                state, chunk = _last_finite(runner, start, consts, chunk_data, bad - int(start.step), chunk)
                losses.append(chunk[: int(state.step) - int(start.step)])
                done = int(state.step)
                stop = diagnose_nonfinite(runner, state, consts, plan.step_data(chunk_data, bad - int(start.step)), bad, objective)
                warnings.warn(stop.message, RuntimeWarning, stacklevel=3)
                bar.update(done, losses[-1])
                break
            state = new
            losses.append(chunk)
            if acc:
                sums.append((done, jax.device_get(acc), ran))
            done += ran
            dt = time.perf_counter() - t
            rate = ran / dt if dt > 0 else None
            if plan.feeder is None:
                following, next_data = plan.chunk(done, steps, rate, block), data
            bar.update(done, chunk)
            ended = False
            if watch is not None and done % watch.window == 0:
                if avg_from is None and watch.converged(np.concatenate(losses)):
                    stop = StopInfo(reason="converged", steps=done)
                    avg_from = done - 2 * watch.window  # the two stationary windows start the average
                    ended = not sums
                ended = ended or (avg_from is not None and done - avg_from >= AVERAGE_MIN)
            loop_meta = {"avg_from": avg_from, "stopped": stop.reason, "ended": ended}
            plan.after_chunk(state, consts, losses, sums, watch, done, ended or done >= steps, loop_meta)
            if ended:
                break
            n, chunk_data = following, next_data
    except KeyboardInterrupt:
        stop = StopInfo(reason="interrupted", steps=done)
        warnings.warn(f"fit interrupted at step {done}: returning the state after the last completed chunk", RuntimeWarning, stacklevel=3)
    finally:
        bar.close()
    stop.steps = done
    all_losses = np.concatenate(losses) if losses else np.zeros((0,))
    return state, all_losses, stop, _average(sums, avg_from if avg_from is not None else done - done // 4)


def _resume_step(resume) -> int:
    return 0 if resume is None else int(ckpt_io.read_meta(resume)["step"])


def _data_lengths(model, args, kwargs, guide_prog, info) -> set:
    """Plate sizes and subsample sizes (the lengths along which data is sharded); checks that a
    family guide has no latent inside a subsampled plate."""
    if isinstance(guide_prog, FamilyGuide) and info.subsampled:
        plates = check_family_subsample(model, args, kwargs)
    else:
        plates, _ = model_plates(model, args, kwargs)
    return {k for n, b in plates.values() for k in (n, b) if k is not None}


@dataclasses.dataclass
class _Plan:
    """The chunk schedule, the data of each chunk (streamed batches) and checkpoints.

    Without batches or checkpoints, chunk sizes adapt to the measured speed (`_chunk_size`);
    with either, chunks have `FIXED_CHUNK` steps (streamed blocks have a fixed shape; checkpoints
    come every `every` chunks), cut short at the same boundaries. The result does not depend on
    the chunk sizes (see `_loop`), so a resumed fit equals an uninterrupted one.
    """

    feeder: Any = None
    mesh: Any = None
    lengths: Any = ()
    n_batch: int = 0
    path: Any = None
    every: int = 10
    resume: Any = None
    meta: dict = dataclasses.field(default_factory=dict)
    count: int = 0

    @classmethod
    def make(cls, feeder, mesh, lengths, data, n_batch, path, every, resume, seed, steps):
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"checkpoint_every must be a positive number of chunks, got {every!r}")
        shapes = [list(np.shape(x)) for x in data]
        return cls(feeder, mesh, lengths, n_batch, path, int(every), resume, {"seed": int(seed), "steps": int(steps), "data_shapes": shapes})

    @property
    def fixed(self) -> bool:
        return self.feeder is not None or self.path is not None or self.resume is not None

    def chunk(self, done, total, rate, boundary) -> int:
        if done >= total:
            return 0
        if not self.fixed:
            return _chunk_size(done, total, rate, boundary)
        n = min(FIXED_CHUNK, total - done)
        return max(1, min(n, boundary - done % boundary) if boundary else n)

    def chunk_data(self, data, n):
        """The data of a chunk of `n` steps: with batches, the next block of `n` batches in front."""
        if self.feeder is None or n <= 0:
            return data
        block = place(self.feeder.block(n, FIXED_CHUNK), self.mesh, self.lengths, axis=1)
        return block + list(data[self.n_batch :])

    def step_data(self, chunk_data, i):
        """The data of step `i` of a chunk."""
        if self.feeder is None:
            return chunk_data
        return [x[i] for x in chunk_data[: self.n_batch]] + list(chunk_data[self.n_batch :])

    def after_chunk(self, state, consts, losses, sums, watch, done, final, loop_meta):
        if self.path is None or jax.process_index() != 0:
            return
        self.count += 1
        if final or self.count % self.every == 0:
            meta = {**self.meta, **loop_meta, "step": int(done)}
            w = {"_calm": watch._calm, "_checked": watch._checked} if watch is not None else None
            ckpt_io.save(self.path, ckpt_io.Checkpoint(state, consts, np.concatenate(losses), sums, w, meta))

    def restore(self, state, consts):
        c = ckpt_io.load(self.resume, state, consts, state.params)
        want, got = self.meta, c.meta
        for k in ("seed", "data_shapes"):
            if got.get(k) != want.get(k):
                raise ValueError(f"resume: the checkpoint's {k} ({got.get(k)}) differs from this fit's ({want.get(k)})")
        return c


def _last_finite(runner, start, consts, data, n_good, chunk):
    """Replay a chunk from its start for the steps before the first bad one (deterministic), then
    step back further while the parameters are not finite."""
    for n in range(max(n_good, 0), -1, -1):
        state, losses, _, _, _ = runner.run(start, consts, data, n) if n > 0 else (start, None, None, None, None)
        if all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.params)):
            return state, chunk[:n]
    return start, chunk[:0]


def _average(sums, start: int):
    """The mean of the iterates of the chunks that begin at or after step `start` (the last chunk
    at least): the stationary windows of a converged fit, else the last quarter of the run."""
    if not sums:
        return None
    chosen = [(acc, n) for first, acc, n in sums if first >= start] or [sums[-1][1:]]
    count = sum(n for _, n in chosen)
    total = chosen[0][0]
    for acc, _ in chosen[1:]:
        total = jax.tree.map(np.add, total, acc)
    return jax.tree.map(lambda x: x / count, total)
