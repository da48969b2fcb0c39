"""Checkpoints of a running fit, written atomically in an open format.

A checkpoint is one zip file (readable with `numpy.load` and `zipfile`) holding

- `meta.json`: format tag, step, seed, the number of steps asked for, the convergence watch's
  state, the step counts of the iterate sums, and a fingerprint of the fit (model, guide,
  objective, parameter shapes) that `resume` checks;
- one `.npy` member per array: `state/params/...`, `state/opt_state/...`, `state/key`,
  `state/step`, `consts/...`, `losses` (every step so far) and `sums/<i>/...` (iterate sums, for
  averaging).

`save` writes the whole file under a temporary name in the same folder, flushes it to disk and
then renames it over the previous checkpoint with `os.replace`, which is atomic: a crash at any
moment leaves either the previous checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pathlib
import zipfile
from typing import Any

import jax
import numpy as np

__all__ = ["Checkpoint", "save", "load", "FORMAT"]

FORMAT = "provi-checkpoint/1"


@dataclasses.dataclass
class Checkpoint:
    """What a fit needs to continue: state, constants, losses so far, iterate sums, watch state."""

    state: Any  # provi.loop.FitState
    consts: Any
    losses: np.ndarray
    sums: list  # [(first step, iterate sum pytree, steps)] per chunk
    watch: dict | None
    meta: dict


def _flat(prefix: str, tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {prefix + jax.tree_util.keystr(p): np.asarray(jax.device_get(x)) for p, x in leaves}


def _unflat(prefix: str, template, arrays: dict, what: str):
    leaves = []
    for p, t in jax.tree_util.tree_flatten_with_path(template)[0]:
        k = prefix + jax.tree_util.keystr(p)
        if k not in arrays:
            raise ValueError(f"checkpoint has no array {k!r}: it was written by a different fit ({what})")
        x = arrays[k]
        if np.shape(x) != np.shape(t):
            raise ValueError(f"checkpoint array {k!r} has shape {np.shape(x)}, the fit expects {np.shape(t)} ({what})")
        leaves.append(x.astype(np.asarray(t).dtype) if hasattr(t, "dtype") else x)
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


def save(path, ckpt: Checkpoint) -> None:
    """Write `ckpt` to `path` atomically (temporary file in the same folder, fsync, os.replace)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {**_flat("state", ckpt.state), **_flat("consts", ckpt.consts), "losses": np.asarray(ckpt.losses)}
    for i, (_, acc, _) in enumerate(ckpt.sums):
        arrays.update(_flat(f"sums/{i}", acc))
    meta = {**ckpt.meta, "format": FORMAT, "watch": ckpt.watch, "sums": [[int(f), int(n)] for f, _, n in ckpt.sums]}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
                z.writestr("meta.json", json.dumps(meta, indent=1))
                for name, x in arrays.items():
                    buf = io.BytesIO()
                    np.lib.format.write_array(buf, np.asarray(x, order="C"), allow_pickle=False)
                    z.writestr(name + ".npy", buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_meta(path) -> dict:
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("meta.json"))


def load(path, state_template, consts_template, params_template) -> Checkpoint:
    """Read the checkpoint at `path` into the structures of a freshly set-up fit."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"resume: no checkpoint at {str(path)!r}")
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("meta.json"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"resume: {str(path)!r} is not a provi checkpoint (format {meta.get('format')!r})")
        arrays = {}
        for name in z.namelist():
            if name.endswith(".npy"):
                arrays[name[:-4]] = np.lib.format.read_array(io.BytesIO(z.read(name)), allow_pickle=False)
    what = str(path)
    state = _unflat("state", state_template, arrays, what)
    consts = _unflat("consts", consts_template, arrays, what)
    sums = [(f, _unflat(f"sums/{i}", params_template, arrays, what), n) for i, (f, n) in enumerate(meta["sums"])]
    return Checkpoint(state, consts, arrays["losses"], sums, meta.get("watch"), meta)
