"""A fit saved by `FitResult.save`, loaded back for results (`provi.load`)."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from provi.core.reparam import decentre
from provi.engine.schedule import StopInfo
from provi.engine.step import setup
from provi.errors import ModelError
from provi.persist import unflatten_tree
from provi.programs import guide_from_spec
from provi.result import FORMAT, FitResult

__all__ = ["load"]


def load(path, model, *args, guide=None, **kwargs) -> FitResult:
    """Load a fit saved by `FitResult.save` for `model(*args, **kwargs)`.

    Family guides are rebuilt from the saved metadata; for a NumPyro guide pass it as `guide=`.
    The default correction (`correct`, PSIS where guide="auto" advised it) and auto's record come
    back with it; estimator states (baselines) and the optimiser state do not: a loaded fit is for
    results, a checkpoint (`provi.fit(checkpoint=...)`) for resuming.
    """
    path = pathlib.Path(path)
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} holds a fit in format {meta.get('format')!r}; this provi reads {FORMAT!r} "
            "(older versions stored Gaussian scales differently): fit the model again and save it"
        )
    if guide is None:
        guide = guide_from_spec(meta["guide"])
    key = jax.random.PRNGKey(meta["seed"])
    if meta.get("reparam"):  # the fit was of the model with these sites non-centred: rebuild that model
        model = decentre(model, tuple(meta["reparam"]["sites"]), meta["reparam"]["centered"])
    alg = setup(model, *args, guide=guide, seed=meta["seed"], **kwargs)
    model_prog, guide_prog = alg.model, alg.guide
    if "latent_sites" in meta and list(model_prog.info.latent_names) != list(meta["latent_sites"]):
        raise ModelError(f"the saved fit in {str(path)!r} has latent sites {meta['latent_sites']}, the model given has "
                         f"{list(model_prog.info.latent_names)}: load it with the model it was fitted to")
    with np.load(path / "params.npz") as f:
        arrays = dict(f)
    template = {"model": model_prog.init_params(), "guide": guide_prog.init_params(key)}
    params = jax.tree.map(jnp.asarray, unflatten_tree(template, arrays, what=f"saved fit {str(path)!r}"))
    with np.load(path / "consts.npz") as f:
        consts = {k.strip("[]'"): jnp.asarray(v) for k, v in f.items()}
    s = meta["stop"]
    seconds = s.get("seconds")  # absent from fits saved before it was kept
    stop = StopInfo(reason=s["reason"], steps=s["steps"], message=s["message"], notes=s["notes"],
                    seconds=float("nan") if seconds is None else float(seconds))
    return FitResult(
        data=alg.data, layout=alg.layout, model=model_prog, guide=guide_prog, params=params, consts=consts,
        losses=np.load(path / "losses.npy"), args=alg.args, kwargs=alg.kwargs, objective=meta["objective"], stop=stop,
        seed=meta["seed"], correct=meta.get("correct"), auto=meta.get("auto"), reparam=meta.get("reparam"),
    )
