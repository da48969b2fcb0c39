"""JAX's persistent compilation cache, switched on for provi's programs unless the user chose otherwise.

A fit compiles a start program and a training loop; with the cache, a new process fitting the
same model (the command line, a rerun of a script) loads them from disk instead of compiling.
Location: `$PROVI_CACHE_DIR`, else `~/.cache/provi/xla`; `PROVI_CACHE_DIR=off` disables it. A
cache directory the user configured in JAX is left alone.
"""

from __future__ import annotations

import os
import pathlib

import jax

_done = False


def enable_compilation_cache() -> None:
    """Point JAX's persistent compilation cache at provi's directory (once; idempotent)."""
    global _done
    if _done:
        return
    _done = True
    where = os.environ.get("PROVI_CACHE_DIR", "")
    if where.lower() == "off" or jax.config.jax_compilation_cache_dir:
        return
    path = pathlib.Path(where) if where else pathlib.Path.home() / ".cache" / "provi" / "xla"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
