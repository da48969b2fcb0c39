"""Saving and loading fits in open formats: parameters as npz, metadata and losses as JSON/npz."""

from __future__ import annotations

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["save", "load", "FORMAT"]

# provi-fit/2: Gaussian scales are stored as logarithms (provi-fit/1 stored softplus inverses, which
# would load into the same names with another meaning, so version 1 files are refused).
FORMAT = "provi-fit/2"


def _flat(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _guide_spec(guide) -> dict:
    fam = getattr(guide, "family", None)
    if fam is None:
        return {"kind": "numpyro", "name": getattr(guide.guide, "__name__", "guide")}
    fields = {k: v for k, v in vars(fam).items() if isinstance(v, (int, float, str, bool))}
    return {"kind": "family", "name": type(fam).__name__, "fields": fields}


def save(res, path) -> None:
    """Write `params.npz`, `consts.npz`, `losses.npy` and `meta.json` into directory `path`."""
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "params.npz", **_flat(res.params))
    np.savez(path / "consts.npz", **_flat(res.consts))
    np.save(path / "losses.npy", np.asarray(res.losses))
    meta = {
        "format": FORMAT,
        "guide": _guide_spec(res.guide),
        "objective": repr(res.objective),
        "seed": res.seed,
        "stop": {"reason": res.stop.reason, "steps": res.stop.steps, "message": res.stop.message, "notes": res.stop.notes},
        "latent_sites": list(res.model.info.latent_names),
        "correct": res.correct,  # the correction summary() applies by default (guide="auto")
        "auto": None if res.auto is None else {"tried": list(res.auto["tried"]), "khat": float(res.auto["khat"])},
    }
    tmp = path / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path / "meta.json")


def _unflat(template, arrays) -> object:
    leaves = []
    for p, x in jax.tree_util.tree_flatten_with_path(template)[0]:
        k = jax.tree_util.keystr(p)
        if k not in arrays:
            raise ValueError(f"saved fit has no parameter {k}: it was saved for another model or guide")
        leaves.append(jnp.asarray(arrays[k]))
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


def load(path, model, *args, guide=None, **kwargs):
    """Load a fit saved by `FitResult.save` for `model(*args, **kwargs)`.

    Family guides are rebuilt from the saved metadata; for a NumPyro guide pass it as `guide=`.
    The default correction (`correct`, PSIS where guide="auto" advised it) and auto's record come
    back with it; estimator states (baselines) and the optimiser state do not: a loaded fit is for
    results, a checkpoint (`provi.fit(checkpoint=...)`) for resuming.
    """
    from provi import guides as G
    from provi.core.model import inspect_model
    from provi.core.vocab import Objective
    from provi.build import make_guide
    from provi.guides.program import ModelProgram
    from provi.result import FitResult, StopInfo

    path = pathlib.Path(path)
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} holds a fit in format {meta.get('format')!r}; this provi reads {FORMAT!r} "
            "(older versions stored Gaussian scales differently): fit the model again and save it"
        )
    spec = meta["guide"]
    if guide is None:
        if spec["kind"] != "family":
            raise ValueError(f"this fit used the NumPyro guide {spec['name']!r}: pass it as guide=")
        guide = getattr(G, spec["name"])(**spec.get("fields", {}))
    key = jax.random.PRNGKey(meta["seed"])
    info = inspect_model(model, args, kwargs)
    model_prog = ModelProgram(model, info)
    guide_prog = make_guide(guide, info, args, kwargs, key, None)
    with np.load(path / "params.npz") as f:
        arrays = dict(f)
    template = {"model": model_prog.init_params(), "guide": guide_prog.init_params(key)}
    params = _unflat(template, arrays)
    with np.load(path / "consts.npz") as f:
        consts = {k.strip("[]'"): jnp.asarray(v) for k, v in f.items()}
    s = meta["stop"]
    stop = StopInfo(reason=s["reason"], steps=s["steps"], message=s["message"], notes=s["notes"])
    from provi.loop import split_data

    data, layout = split_data(args, kwargs)
    return FitResult(
        data=data,
        layout=layout,
        model=model_prog, guide=guide_prog, params=params, consts=consts, losses=np.load(path / "losses.npy"),
        args=args, kwargs=kwargs, objective=meta["objective"], stop=stop, state=None, seed=meta["seed"],
        correct=meta.get("correct"), auto=meta.get("auto"),
    )
