"""Checkpoints of a running fit, written atomically in an open format.

A checkpoint is one zip file (readable with `numpy.load` and `zipfile`) holding

- `meta.json`: format tag, step, seed, the number of steps asked for, the shapes of the data, the
  convergence watch's state and the step counts of the iterate sums (`resume` checks the seed and
  the data shapes, and every array's shape against the fit it continues);
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
import pathlib
import zipfile
from typing import Any

import numpy as np

from provi.persist import atomic_write, flatten_tree, unflatten_tree

__all__ = ["Checkpoint", "save", "load", "FORMAT"]

FORMAT = "provi-checkpoint/1"


@dataclasses.dataclass
class Checkpoint:
    """What a fit needs to continue: state, constants, losses so far, iterate sums, watch state."""

    state: Any  # provi.engine.runner.FitState
    consts: Any
    losses: np.ndarray
    sums: list  # [(first step, iterate sum pytree, steps)] per chunk
    watch: dict | None
    meta: dict


def save(path, ckpt: Checkpoint) -> None:
    """Write `ckpt` to `path` atomically (temporary file in the same folder, fsync, os.replace)."""
    arrays = {**flatten_tree(ckpt.state, "state"), **flatten_tree(ckpt.consts, "consts"), "losses": np.asarray(ckpt.losses)}
    for i, (_, acc, _) in enumerate(ckpt.sums):
        arrays.update(flatten_tree(acc, f"sums/{i}"))
    meta = {**ckpt.meta, "format": FORMAT, "watch": ckpt.watch, "sums": [[int(f), int(n)] for f, _, n in ckpt.sums]}

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
            z.writestr("meta.json", json.dumps(meta, indent=1))
            for name, x in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(x, order="C"), allow_pickle=False)
                z.writestr(name + ".npy", buf.getvalue())

    atomic_write(path, write)


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
    what = f"checkpoint {str(path)!r}"
    state = unflatten_tree(state_template, arrays, "state", what)
    consts = unflatten_tree(consts_template, arrays, "consts", what)
    sums = [(f, unflatten_tree(params_template, arrays, f"sums/{i}", what), n) for i, (f, n) in enumerate(meta["sums"])]
    return Checkpoint(state, consts, arrays["losses"], sums, meta.get("watch"), meta)
