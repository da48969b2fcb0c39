"""Compiled programs: the in-process cache, programs compiled once per fit, a compiler thread, and
JAX's persistent (on-disk) compilation cache.

A fit compiles a start program and a training loop. `cached` keeps them in the process, keyed by
what they are specialised to, so fitting the same model again, even on new data of the same
shapes, compiles nothing. `ahead` lowers a program from the shapes of its arguments and compiles
it on the compiler thread while the caller goes on (the training loop while the start runs, then
auto's first k-hat programs); `call` runs it. With the persistent cache, a new process fitting
the same model (the command line, a rerun of a script) loads them from disk: `$PROVI_CACHE_DIR`,
else `~/.cache/provi/xla`; `PROVI_CACHE_DIR=off` disables it; a cache directory the user
configured in JAX is left alone.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import pathlib
import threading
from typing import Any, Callable

import jax

from provi.defaults import COMPILED_CACHE_SIZE, ONCE_COMPILER_OPTIONS, PERSISTENT_CACHE_MIN_SECONDS
from provi.engine.layout import signature

__all__ = ["cached", "lookup", "cache_size", "cache_entries", "clear_cache", "run_once", "compiler", "ahead", "call",
           "enable_compilation_cache"]

_CACHE: "collections.OrderedDict[Any, Any]" = collections.OrderedDict()
_LOCK = threading.Lock()


def cached(key, build: Callable[[], Any]) -> Any:
    """The object cached under `key`, built on first use (least recently used ones are dropped
    beyond `provi.defaults.COMPILED_CACHE_SIZE`); a key that cannot be hashed is never cached."""
    try:
        hash(key)
    except TypeError:
        return build()
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    value = build()
    with _LOCK:
        _CACHE[key] = value
        if len(_CACHE) > COMPILED_CACHE_SIZE:
            _CACHE.popitem(last=False)
    return value


def lookup(key) -> Any:
    """The object cached under `key`, or None (nothing is built)."""
    try:
        hash(key)
    except TypeError:
        return None
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    return None


def cache_size() -> int:
    """How many objects the in-process cache holds."""
    return len(_CACHE)


def cache_entries() -> list:
    """The in-process cache's `(key, object)` pairs, least recently used first."""
    with _LOCK:
        return list(_CACHE.items())


def clear_cache() -> None:
    """Empty the in-process cache (compiled programs are built again on next use)."""
    with _LOCK:
        _CACHE.clear()


def run_once(fn: Callable) -> Callable:
    """jit for a program that runs once per fit: compiled without LLVM's expensive optimisations,
    which halves its compile time and costs nothing that matters at run time."""
    compiled = {}

    def call(*args):
        key = signature(args)
        if key not in compiled:
            compiled[key] = jax.jit(fn).lower(*args).compile(compiler_options=ONCE_COMPILER_OPTIONS)
        return compiled[key](*args)

    return call


_POOL: list = []


def compiler() -> concurrent.futures.ThreadPoolExecutor:
    """The one worker thread that compiles programs ahead (XLA releases the GIL while it works)."""
    if not _POOL:
        _POOL.append(concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="provi-compile"))
    return _POOL[0]


def _ahead_key(jitted, args, static) -> tuple:
    return ("ahead", jitted, tuple(args[i] for i in static), signature([a for i, a in enumerate(args) if i not in static]))


def ahead(jitted, *args, static: tuple = ()) -> None:
    """Compile `jitted` (a `jax.jit` of a function with static argument positions `static`) for
    arguments of the shapes of `args` (arrays or `jax.ShapeDtypeStruct`s; the static ones as
    given) on the compiler thread, unless that is under way or done. Tracing and lowering run here,
    on the caller's thread: NumPyro's handler stack is global, so models are never traced on two
    threads at once. The compiled program waits in the in-process cache for `call`."""
    key = _ahead_key(jitted, args, static)
    if lookup(key) is None:
        lowered = jitted.lower(*args)
        cached(key, lambda: compiler().submit(lowered.compile))


def _ahead_future(jitted, *args, static: tuple = ()):
    """The future of the program `ahead` compiles for arguments like `args`, or None."""
    return lookup(_ahead_key(jitted, args, static))


def call(jitted, *args, static: tuple = ()):
    """`jitted(*args)`, by the program `ahead` compiled for their shapes where there is one (it
    waits for the compiler thread to finish it); else, or where the head start failed (the jitted
    program then reports the error) or the arguments' types differ from those it was compiled for
    (weakly typed scalars), by `jitted` itself."""
    ready = _ahead_future(jitted, *args, static=static)
    if ready is not None and ready.exception() is None:
        try:
            return ready.result()(*[a for i, a in enumerate(args) if i not in static])
        except TypeError:
            pass
    return jitted(*args)


_ENABLED: list = []


def enable_compilation_cache() -> None:
    """Point JAX's persistent compilation cache at provi's directory (once; idempotent)."""
    if _ENABLED:
        return
    _ENABLED.append(True)
    where = os.environ.get("PROVI_CACHE_DIR", "")
    if where.lower() == "off" or jax.config.jax_compilation_cache_dir:
        return
    path = pathlib.Path(where) if where else pathlib.Path.home() / ".cache" / "provi" / "xla"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", PERSISTENT_CACHE_MIN_SECONDS)
