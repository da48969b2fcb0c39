"""Shared fixtures: no persistent compilation cache, no LLVM optimisation passes, XLA:CPU's
fast-compiling kernel emitters, and small models with exact answers.

JAX 0.10.2's persistent-cache write (`compilation_cache.put_executable_and_time`) segfaulted the
test process twice on this machine (2026-11-29/30), once in a serial run; the tests therefore run
without it (`PROVI_CACHE_DIR=off`) unless told otherwise.

Strict dtype promotion (equinox's habit) is not switched on: optax's Adam and NumPyro's
distributions mix Python floats with int32 counters and fail under it.
"""

import os

from provi.defaults import FAST_COMPILE_EMITTERS  # imports no JAX backend: XLA_FLAGS still apply

os.environ.setdefault("PROVI_CACHE_DIR", "off")
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    # The tests compile thousands of programs and run most of them for moments: LLVM's optimisation
    # passes were most of their time (the slowest test: 129 s -> 41 s without them). The semantics do
    # not change (no fast-math either way), and provi's own loops and draw programs keep the
    # optimisation level they set themselves (`provi.defaults.LOOP_COMPILER_OPTIONS`).
    # Subprocesses inherit it.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
                               " --xla_llvm_disable_expensive_passes=true").strip()
if FAST_COMPILE_EMITTERS and "xla_cpu_use_fusion_emitters" not in os.environ["XLA_FLAGS"]:
    # XLA:CPU's older kernel emitters, for every program of the tests, provi's training loops
    # included: most of what remained was the MLIR fusion emitters' compile time
    # (tests/objectives/test_objectives.py 173 -> 109 s). Results differ from the default emitters'
    # in the last bits (no fast-math either way). Only where provi sets the option itself (the
    # jaxlib measured): an unknown flag in XLA_FLAGS aborts the process.
    os.environ["XLA_FLAGS"] += " --xla_cpu_use_fusion_emitters=false"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


from provi.engine.compile import clear_cache  # noqa: E402
from provi.examples.eight_schools import model as eight_schools  # noqa: E402

ES_DATA = (
    8,
    jnp.array([15.0, 10, 16, 11, 9, 11, 10, 18]),
    jnp.array([28.0, 8, -3, 7, -1, 1, 18, 12]),
)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Free compiled programs after each test module. A full run in one process otherwise keeps
    thousands of executables; twice, XLA's CPU compiler then segfaulted at the same point (about
    40% of the suite), plausibly at the kernel's limit of 65,530 memory maps per process."""
    yield
    clear_cache()
    jax.clear_caches()


@pytest.fixture
def es():
    return eight_schools, ES_DATA


def se_tol(sd, n, k=4.0):
    """k standard errors of a Monte Carlo mean of n independent draws with standard deviation sd."""
    return k * np.asarray(sd) / np.sqrt(n)
