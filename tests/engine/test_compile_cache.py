"""The persistent compilation cache: where it goes, what it keeps, and how it is turned off.

Run in subprocesses: JAX's cache settings are process-wide, and the test suite runs without the
cache (see conftest.py)."""

import os
import subprocess
import sys

SCRIPT = """
import jax, jax.numpy as jnp
from provi.engine.compile import enable_compilation_cache
enable_compilation_cache()
print(jax.config.jax_compilation_cache_dir)
jax.jit(lambda x: jnp.sin(x) * 2.0)(jnp.ones(3)).block_until_ready()  # compiles in a few ms
"""


def _run(tmp_path, cache_dir):
    env = {**os.environ, "PROVI_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_the_cache_keeps_even_a_program_that_compiles_in_milliseconds(tmp_path):
    cache = tmp_path / "xla"
    assert _run(tmp_path, str(cache)) == str(cache)
    entries = sorted(p.name for p in cache.iterdir())
    assert any("lambda" in name for name in entries), entries  # the small jitted program was written
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    _run(tmp_path, str(cache))  # a new process loads it instead of compiling (nothing new written)
    assert {p.name for p in cache.iterdir()} == set(before)


def test_the_cache_is_off_when_told(tmp_path):
    assert _run(tmp_path, "off") == "None"
