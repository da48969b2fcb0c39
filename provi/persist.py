"""Open formats and atomic writes (floor 1): pytrees as flat named arrays, files replaced atomically.

Saved fits (`provi.result`) and checkpoints (`provi.engine.checkpoint`) are written with these:
arrays as `.npy`/`.npz` members named by their pytree path, metadata as JSON, never pickle.
"""

from __future__ import annotations

import os
import pathlib
from typing import Callable

import jax
import numpy as np

__all__ = ["flatten_tree", "unflatten_tree", "atomic_write"]


def flatten_tree(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """{prefix + pytree path: host array} for every leaf of `tree`.

    >>> sorted(flatten_tree({"a": 1.0, "b": [2.0]}, "p"))
    ["p['a']", "p['b'][0]"]
    """
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {prefix + jax.tree_util.keystr(p): np.asarray(jax.device_get(x)) for p, x in leaves}


def unflatten_tree(template, arrays: dict, prefix: str = "", what: str = "saved file"):
    """The pytree of `template`'s structure with each leaf read from `arrays` (as `flatten_tree`
    named it), cast to the template leaf's dtype; a clear error naming `what` when a leaf is
    missing or has another shape."""
    leaves = []
    for p, t in jax.tree_util.tree_flatten_with_path(template)[0]:
        k = prefix + jax.tree_util.keystr(p)
        if k not in arrays:
            raise ValueError(f"{what} has no array {k!r}: it was written by a different fit (another model, guide or objective)")
        x = np.asarray(arrays[k])
        if np.shape(x) != np.shape(t):
            raise ValueError(f"{what}: array {k!r} has shape {np.shape(x)}, expected {np.shape(t)}")
        leaves.append(x.astype(np.asarray(t).dtype) if isinstance(t, (np.ndarray, np.generic, jax.Array)) else x)
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


def atomic_write(path, write: Callable) -> None:
    """Write a file by `write(open binary file)` under a temporary name in the same folder, flush it
    to disk, then rename it over `path` (`os.replace` is atomic: a crash leaves the old file or the
    new one, never a mix)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
